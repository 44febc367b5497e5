"""The audit index of a service's log: which positions concern an entity, a customer, a
correlation id or an actor, so that an auditor's "everything about X" reads a few rows instead
of the whole log.

A projection like any other (rebuilt and compared by ``dealreg audit replay``): it reads the
stored rows as they are, without the domain's classes, and indexes every event under its
stream id, every id among its fields (a partner, a customer, a registration, a contract...),
its correlation id and its actor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder

from shared.audit.causes import AUDIT_KEY
from shared.audit.checkpoints import Checkpoint
from shared.database import Database
from shared.projections import View
from shared.settings import ServiceSettings
from shared.subscriptions import Follower, Source

CORRELATION = "correlation:"
ACTOR = "actor:"
CUSTOMER = "customer:"
"""Customers are known by their matching key (``customer_key``), not by an id."""


def index_table(service: str) -> str:
    return f"{service}_audit_index"


class AuditIndex(View):
    index_table: str

    def process_many(self, events: Sequence[tuple[Any, Tracking]]) -> None:
        """Every key of every event, copied in: an event is indexed once (its position is
        tracked in the same transaction), so no row can already be there."""
        if not events:
            return
        with self.datastore.transaction(commit=True) as curs:
            copy = self.statement(f"COPY {{schema}}.{self.index_table} (key, position) FROM STDIN")
            with curs.copy(copy) as rows:
                for keys, tracking in events:
                    for key in keys:
                        rows.write_row((key, tracking.notification_id))
            self._insert_tracking(curs, events[-1][1])


def audit_index(service: str) -> type[AuditIndex]:
    table = index_table(service)
    return type(
        f"{service.title()}AuditIndex",
        (AuditIndex,),
        {
            "name": f"{service}_audit",
            "index_table": table,
            "tables": (table,),
            "create_sql": (
                f"CREATE TABLE IF NOT EXISTS {{schema}}.{table} ("
                " key text NOT NULL, position bigint NOT NULL, PRIMARY KEY (key, position))",
            ),
        },
    )


def index_keys(notification: Notification) -> list[str]:
    """The keys an event is found under. Read as plain JSON (the transcoder's typed values are
    not needed to find ids: it writes each UUID as ``{"_type_": "uuid_hex", ...}``), since every
    event of the log passes through here."""
    state: dict[str, Any] = json.loads(notification.state)
    keys = {str(notification.originator_id)}
    keys.update(str(value) for value in _ids(state))
    if isinstance(state.get("customer_key"), str):
        keys.add(CUSTOMER + state["customer_key"])
    cause = state.get(AUDIT_KEY) or {}
    if cause.get("correlation_id"):
        keys.add(CORRELATION + str(cause["correlation_id"]))
    if cause.get("actor"):
        keys.add(ACTOR + str(cause["actor"]))
    return sorted(keys)


def _ids(state: dict[str, Any]) -> Iterator[UUID]:
    for name, value in state.items():
        if name == AUDIT_KEY:
            continue
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, dict) and item.get("_type_") == "uuid_hex":
                yield UUID(item["_data_"])


def indexed_log(service: str, recorder: PostgresApplicationRecorder) -> Source:
    """The service's own log, every event, as the keys it is indexed under."""
    return Source(service, recorder, index_keys)


@dataclass(frozen=True)
class AuditTrail:
    """What each service runs for its auditors: the index's follower and the checkpoint job."""

    follower: Follower
    checkpoint: Checkpoint
    view: AuditIndex


def audit_trail(
    service: str, app: Any, settings: ServiceSettings, database: Database
) -> AuditTrail:
    view = audit_index(service).open(database)
    return AuditTrail(
        follower=Follower(indexed_log(service, app.recorder), view, database),
        checkpoint=Checkpoint(app, service, settings.audit_checkpoint_every),
        view=view,
    )
