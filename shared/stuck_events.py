"""Events a follower cannot apply: where it is stuck, and what an operator decided (decision 17).

A follower that fails to apply one event again and again stops there and records it in a table
beside the logs, so every replica (``/readyz``, ``/metrics``) and ``dealreg followers`` see it.
An operator then asks for a retry (after a fix) or skips the event with a reason. Rows are never
deleted: a skip stays on record, with who decided it and why, as long as the logs do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import sql

from shared.database import Database

Decision = Literal["retry", "skip"]

TABLE = "follower_stuck_events"

_CREATE = """
CREATE TABLE IF NOT EXISTS {table} (
    follower text NOT NULL,
    position bigint NOT NULL,
    log text NOT NULL,
    topic text NOT NULL,
    error text NOT NULL,
    failures integer NOT NULL,
    stuck_at timestamptz NOT NULL DEFAULT now(),
    decision text CHECK (decision IN ('retry', 'skip')),
    reason text,
    decided_by text,
    decided_at timestamptz,
    passed_at timestamptz,
    PRIMARY KEY (follower, position)
)
"""

ERROR_CHARS = 2000
"""Enough to tell one error from another; the log line has the traceback."""


@dataclass(frozen=True)
class StuckEvent:
    follower: str
    position: int
    log: str
    topic: str
    error: str
    failures: int
    stuck_at: datetime
    decision: Decision | None = None
    reason: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    passed_at: datetime | None = None

    @property
    def status(self) -> str:
        """stuck (waiting for an operator), retrying, skipping; then applied or skipped."""
        if self.passed_at is None:
            return {None: "stuck", "retry": "retrying", "skip": "skipping"}[self.decision]
        return "skipped" if self.decision == "skip" else "applied"

    def describe(self) -> str:
        return (
            f"{self.follower} is stuck at {self.log} position {self.position} "
            f"({self.topic}): {self.error}"
        )

    def as_json(self) -> dict[str, Any]:
        fields = asdict(self)
        for name in ("stuck_at", "decided_at", "passed_at"):
            fields[name] = fields[name].isoformat() if fields[name] else None
        return {**fields, "status": self.status}


def printable(error: str) -> str:
    """An error as text PostgreSQL can hold: it may quote the very value that failed."""
    return error.replace("\x00", "\\u0000")[:ERROR_CHARS]


class StuckEvents:
    """The table of stuck events of one schema (the logs' schema), shared by every service."""

    def __init__(self, database: Database) -> None:
        self.pool = database.pool
        self.table = sql.SQL("{}.{}").format(sql.Identifier(database.schema), sql.Identifier(TABLE))
        if TABLE not in database.created:
            with database.creating_tables() as conn:
                conn.execute(sql.SQL(_CREATE).format(table=self.table))
            database.created.add(TABLE)

    def _rows(self, query: str, params: Iterable[Any] = ()) -> list[StuckEvent]:
        with self.pool.get_connection() as conn:  # autocommit: each statement on its own
            rows = conn.execute(sql.SQL(query).format(table=self.table), list(params)).fetchall()
        return [StuckEvent(**row) for row in rows]

    def record(
        self, follower: str, position: int, log: str, topic: str, error: str, failures: int
    ) -> StuckEvent:
        """The follower is stuck here (again: a retry that failed waits for a new decision).
        A skip decided meanwhile is kept: the follower carries it out next."""
        self._rows(
            """INSERT INTO {table} (follower, position, log, topic, error, failures)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (follower, position) DO UPDATE SET
                 error = EXCLUDED.error, failures = {table}.failures + EXCLUDED.failures,
                 stuck_at = now(), decision = NULL, decided_by = NULL, decided_at = NULL,
                 reason = NULL, passed_at = NULL
               WHERE {table}.decision IS DISTINCT FROM 'skip'
               RETURNING *""",
            (follower, position, log, topic, printable(error), failures),
        )
        return self.get(follower, position)

    def get(self, follower: str, position: int) -> StuckEvent:
        (found,) = self._rows(
            "SELECT * FROM {table} WHERE follower = %s AND position = %s", (follower, position)
        )
        return found

    def unresolved(self, followers: Iterable[str] | None = None) -> list[StuckEvent]:
        """Events still in a follower's way (whatever was decided, it has not moved past)."""
        if followers is None:
            return self._rows("SELECT * FROM {table} WHERE passed_at IS NULL ORDER BY stuck_at")
        return self._rows(
            "SELECT * FROM {table} WHERE passed_at IS NULL AND follower = ANY(%s)"
            " ORDER BY stuck_at",
            (list(followers),),
        )

    def every(self) -> list[StuckEvent]:
        """The whole record, skips included: what figures leave out, and why."""
        return self._rows("SELECT * FROM {table} ORDER BY stuck_at")

    def skipped(self, follower: str) -> set[int]:
        """Positions an operator told this follower to move past (also when rebuilding)."""
        rows = self._rows(
            "SELECT * FROM {table} WHERE follower = %s AND decision = 'skip'", (follower,)
        )
        return {row.position for row in rows}

    def decide(
        self,
        follower: str,
        decision: Decision,
        *,
        by: str,
        reason: str | None = None,
        position: int | None = None,
    ) -> list[StuckEvent]:
        """An operator's decision on the event(s) a follower is stuck at; none if it is not."""
        return self._rows(
            """UPDATE {table} SET decision = %s, reason = %s, decided_by = %s,
                 decided_at = now()
               WHERE follower = %s AND passed_at IS NULL
                 AND (%s::bigint IS NULL OR position = %s::bigint)
               RETURNING *""",
            (decision, reason, by, follower, position, position),
        )

    def passed(self, follower: str, position: int) -> None:
        """The follower moved past the event: applied it, or skipped it as decided."""
        self._rows(
            """UPDATE {table} SET passed_at = now()
               WHERE follower = %s AND position <= %s AND passed_at IS NULL RETURNING *""",
            (follower, position),
        )
