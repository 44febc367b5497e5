"""Checkpoints of a log's hash chain, recorded in the log itself and so published: delivered by
webhook to whoever subscribes to ``LogCheckpointed``, served by ``/v1/events`` and the export.
Copies kept outside the database are what catches a log rewritten together with its chain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

import shared.contracts as published
from shared.audit.chain import chain_table
from shared.contracts import publishes


@publishes(Checkpointed=published.LogCheckpointed)
class LogChain(Aggregate):
    """The checkpoints of one service's log."""

    @staticmethod
    def create_id(service: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"urn:dealreg:chain:{service}")

    class Checkpointed(Aggregate.Event):
        through_position: int
        chain_hash: str

    @event("Started")
    def __init__(self, service: str) -> None:
        self.service = service
        self.through_position = 0

    def due(self, head_position: int, every: int) -> bool:
        return head_position - self.through_position >= every

    @event(Checkpointed)
    def checkpointed(self, through_position: int, chain_hash: str) -> None:
        self.through_position = through_position


class Checkpoint:
    """A clock job: once ``every`` events have been chained since the last checkpoint, the next
    tick records the chain's head."""

    def __init__(self, app: Any, service: str, every: int) -> None:
        self.app = app
        self.service = service
        self.every = every

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        head = self._head()
        if head is None:
            return []
        try:
            chain: LogChain = self.app.repository.get(LogChain.create_id(self.service))
        except AggregateNotFoundError:
            chain = LogChain(self.service)
        position, digest = head
        if not chain.due(position, self.every):
            return []
        chain.checkpointed(through_position=position, chain_hash=digest)
        return [chain]

    def _head(self) -> tuple[int, str] | None:
        recorder = self.app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        statement = SQL("SELECT position, hash FROM {}.{} ORDER BY position DESC LIMIT 1").format(
            Identifier(recorder.datastore.schema), Identifier(chain_table(self.service))
        )
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement)
            row = curs.fetchone()
        return (int(row["position"]), bytes(row["hash"]).hex()) if row else None
