"""Each log is hash-chained, in the transaction that records its events.

``<log>_chain`` holds, for every position of ``<log>_events``, the SHA-256 of the previous
position's hash and the row (position, stream id, stream version, topic, stored state). The
service writes both under the table lock the `eventsourcing` recorder takes for every insert,
so the chain follows commit order exactly. A row changed, deleted, inserted or moved by
anything but the service breaks the chain at that position; rewriting the chain too is caught
by the checkpoints published from it (the head's hash, recorded and delivered as events).

The encoding is fixed and documented here so that anyone can recompute it without this code:

    hash(p) = sha256( hash(previous position) || int64be(p) || originator_id (16 bytes)
                      || int64be(version) || uint32be(len(topic)) || topic (UTF-8)
                      || uint64be(len(state)) || state )

with 32 zero bytes before the first position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
)
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

GENESIS = bytes(32)


def link(
    previous: bytes, position: int, originator_id: UUID, version: int, topic: str, state: bytes
) -> bytes:
    digest = hashlib.sha256(previous)
    digest.update(position.to_bytes(8, "big", signed=True))
    digest.update(originator_id.bytes)
    digest.update(version.to_bytes(8, "big", signed=True))
    encoded_topic = topic.encode()
    digest.update(len(encoded_topic).to_bytes(4, "big"))
    digest.update(encoded_topic)
    digest.update(len(state).to_bytes(8, "big"))
    digest.update(state)
    return digest.digest()


# The chain's encoding (``link``) in SQL: int8send and uuid_send are big-endian, as above.
_APPEND_FUNCTION = (
    "CREATE OR REPLACE FUNCTION {function}("
    " ids uuid[], versions bigint[], topics text[], states bytea[],"
    " unchanged_ids uuid[], unchanged_versions bigint[]) RETURNS SETOF bigint"
    " LANGUAGE plpgsql AS $$"
    " DECLARE positions bigint[]; hashes bytea[] := '{{}}'; previous bytea; topic bytea;"
    " BEGIN"
    "  SET LOCAL lock_timeout = '{lock_timeout}s';"
    "  LOCK TABLE {events} IN EXCLUSIVE MODE;"
    # Under the lock every earlier commit is seen: a stream read at a version that has moved
    # since fails the save as a racing write of that version would (unique_violation).
    "  IF EXISTS (SELECT FROM unnest(unchanged_ids, unchanged_versions) AS read(id, version)"
    "   WHERE coalesce((SELECT max(e.originator_version) FROM {events} AS e"
    "    WHERE e.originator_id = read.id), 0) <> read.version) THEN"
    "   RAISE EXCEPTION 'a stream read for this decision has changed since'"
    "    USING ERRCODE = 'unique_violation';"
    "  END IF;"
    "  NOTIFY {channel};"
    "  WITH inserted AS ("
    "   INSERT INTO {events} (originator_id, originator_version, topic, state)"
    "   SELECT * FROM unnest(ids, versions, topics, states) RETURNING notification_id)"
    "  SELECT array_agg(notification_id ORDER BY notification_id) INTO positions FROM inserted;"
    "  SELECT hash INTO previous FROM {chain} ORDER BY position DESC LIMIT 1;"
    "  previous := coalesce(previous, decode(repeat('00', 32), 'hex'));"
    "  FOR i IN 1 .. coalesce(array_length(positions, 1), 0) LOOP"
    "   topic := convert_to(topics[i], 'UTF8');"
    "   previous := sha256(previous || int8send(positions[i]) || uuid_send(ids[i])"
    "    || int8send(versions[i]) || int4send(octet_length(topic)) || topic"
    "    || int8send(octet_length(states[i])::bigint) || states[i]);"
    "   hashes := array_append(hashes, previous);"
    "  END LOOP;"
    "  INSERT INTO {chain} (position, hash) SELECT * FROM unnest(positions, hashes);"
    "  RETURN QUERY SELECT unnest(positions);"
    " END $$"
)


def chain_table(log: str) -> str:
    return f"{log}_chain"


def _qualified(schema: str, table: str) -> Composed:
    return SQL("{}.{}").format(Identifier(schema), Identifier(table))


class _Chained(PostgresApplicationRecorder):
    """Extends the chain in the transaction that inserts the events."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        log = self.events_table_name.removesuffix("_events")
        self.chain = _qualified(datastore.schema, chain_table(log))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, hash bytea NOT NULL)"
            ).format(self.chain)
        )
        self._append = SQL(
            "INSERT INTO {} (position, hash) SELECT * FROM unnest(%s::bigint[], %s::bytea[])"
        ).format(self.chain)
        function = _qualified(datastore.schema, f"{self.events_table_name}_append")
        self.sql_create_statements.append(
            SQL(_APPEND_FUNCTION).format(
                function=function,
                events=_qualified(datastore.schema, self.events_table_name),
                chain=self.chain,
                channel=Identifier(self.channel_name),
                lock_timeout=SQL(str(int(datastore.lock_timeout))),
            )
        )
        self._call_append = SQL(
            "SELECT position FROM {}(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[],"
            " %s::uuid[], %s::bigint[]) AS position"
        ).format(function)

    def create_table(self) -> None:
        super().create_table()
        self._chain_existing_events()

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """What the library does (the process's tracking row, the table lock, NOTIFY, the
        events) and the chain, with everything done under the lock in one call of a function
        of the database (``<log>_events_append``), so that the lock is held for the server's
        work alone. Done step by step from here, it was held while the thread waited for the
        interpreter between five round trips: 70% of the time at 100 registrations a second
        (docs/decisions/0014). Without a tracking row the call is its own transaction.

        Not in pipeline mode: a save of more than about 300 kB never finished over a
        Unix-domain socket that way (client and server both blocked writing)."""
        tracking = kwargs.get("tracking")
        in_transaction = kwargs.pop("in_transaction", None)
        unchanged: dict[UUID, int] = kwargs.pop("unchanged", None) or {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if tracking is None and in_transaction is None:
                if not stored_events:
                    return None
                return self._append_events(curs, stored_events, unchanged)
            with conn.transaction():
                if in_transaction is not None:  # a request's stored answer, before the lock
                    in_transaction(curs)
                if tracking is not None:
                    self._insert_events(curs, stored_events, **kwargs)  # the tracking row
                if not stored_events:
                    return None
                return self._append_events(curs, stored_events, unchanged)

    def _append_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        unchanged: dict[UUID, int],
    ) -> Sequence[int]:
        curs.execute(
            self._call_append,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
                list(unchanged),
                list(unchanged.values()),
            ),
            prepare=True,
        )
        return [row["position"] for row in curs.fetchall()]

    def _extend(self, curs: Cursor[Any], links: Sequence[tuple[int, bytes]]) -> None:
        """The chain's new positions in one statement (two array parameters)."""
        curs.execute(self._append, ([p for p, _ in links], [h for _, h in links]))

    def _chain_existing_events(self) -> None:
        """A log that predates its chain is chained from its first event, once, when the chain
        table is created (under the recorder's lock, so no insert slips in between)."""
        events = _qualified(self.datastore.schema, self.events_table_name)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("SELECT 1 FROM {} LIMIT 1").format(self.chain))
            if curs.fetchone():
                return
            for statement in self.lock_table_statements:
                curs.execute(statement)
            curs.execute(SQL("SELECT 1 FROM {} LIMIT 1").format(events))
            if not curs.fetchone():
                return
            previous = GENESIS
            links = []
            for row in _rows(curs, events):
                previous = link(previous, *row)
                links.append((row[0], previous))
            self._extend(curs, links)


class ChainedApplicationRecorder(_Chained, PostgresApplicationRecorder):
    pass


class ChainedProcessRecorder(_Chained, PostgresProcessRecorder):
    pass


def _rows(curs: Cursor[Any], events: Composed) -> Iterator[tuple[int, UUID, int, str, bytes]]:
    curs.execute(
        SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
            " ORDER BY notification_id"
        ).format(events)
    )
    for row in curs.fetchall():
        values = tuple(row.values()) if isinstance(row, dict) else tuple(row)
        yield values[0], values[1], values[2], values[3], bytes(values[4])


# --- reading and verifying the chain ---------------------------------------------------------


@dataclass(frozen=True)
class ChainHead:
    log: str
    position: int
    hash: str
    """Hex."""


@dataclass(frozen=True)
class Checkpoint:
    """A chain head published at some time: ``hash`` must be the chain's hash at ``position``."""

    log: str
    position: int
    hash: str
    source: str
    """Where it came from: the log itself, or a copy kept elsewhere."""


@dataclass(frozen=True)
class Break:
    position: int
    kind: str
    """``changed`` (the row is not what was chained: altered, or moved from elsewhere),
    ``deleted`` (chained, no longer in the log), ``inserted`` (in the log, never chained),
    ``checkpoint`` (the chain itself was rewritten: a published checkpoint disagrees)."""
    detail: str


@dataclass(frozen=True)
class Verification:
    log: str
    events: int
    head: ChainHead | None
    checkpoints_checked: int
    first_break: Break | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def chain_head(database_url: str, schema: str, log: str) -> ChainHead | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            SQL("SELECT position, hash FROM {} ORDER BY position DESC LIMIT 1").format(
                _qualified(schema, chain_table(log))
            )
        ).fetchone()
    return ChainHead(log, row[0], bytes(row[1]).hex()) if row else None


def verify_chain(
    database_url: str,
    schema: str,
    log: str,
    *,
    checkpoints: Iterable[Checkpoint] = (),
    progress: Callable[[int], None] = lambda _: None,
) -> Verification:
    """Recompute the chain from the log's rows and compare, position by position, with what was
    chained and with every checkpoint; the first disagreement is the answer."""
    walk = _Walk(log, {c.position: c for c in checkpoints if c.log == log})
    events = _qualified(schema, f"{log}_events")
    chain = _qualified(schema, chain_table(log))
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with conn.cursor(name="verify") as curs:
            curs.itersize = 2000
            curs.execute(
                SQL(
                    "SELECT coalesce(e.notification_id, c.position), e.originator_id,"
                    " e.originator_version, e.topic, e.state, c.hash"
                    " FROM {} e FULL OUTER JOIN {} c ON c.position = e.notification_id"
                    " ORDER BY 1"
                ).format(events, chain)
            )
            for row in curs:
                found = walk.step(*row)
                if walk.seen % 10_000 == 0:
                    progress(10_000)
                if found is not None:
                    return walk.verification(found)
    progress(walk.seen % 10_000)
    return walk.verification(walk.checkpoints_left())


class _Walk:
    """The verifier's way along the log: the hash so far, and what has been checked."""

    def __init__(self, log: str, expected: dict[int, Checkpoint]) -> None:
        self.log = log
        self.expected = expected
        self.previous = GENESIS
        self.seen = 0
        self.checked = 0
        self.head: ChainHead | None = None

    def step(
        self,
        position: int,
        stream: UUID | None,
        version: int | None,
        topic: str | None,
        state: bytes | None,
        chained: bytes | None,
    ) -> Break | None:
        self.seen += 1
        if stream is None or version is None:  # both NOT NULL in the log: no row here
            return Break(position, "deleted", "chained, but no longer in the log")
        if chained is None:
            return Break(position, "inserted", "in the log, but never chained by the service")
        recomputed = link(
            self.previous, position, stream, version, topic or "", bytes(state or b"")
        )
        if recomputed != bytes(chained):
            return Break(
                position,
                "changed",
                f"{topic} of {stream} v{version} is not the row that was chained here "
                "(altered, or moved from another position)",
            )
        checkpoint = self.expected.pop(position, None)
        if checkpoint is not None:
            self.checked += 1
            if checkpoint.hash != recomputed.hex():
                return Break(
                    position,
                    "checkpoint",
                    f"the checkpoint from {checkpoint.source} says {checkpoint.hash}; the log "
                    f"gives {recomputed.hex()}: the log and its chain were rewritten",
                )
        self.previous = recomputed
        self.head = ChainHead(self.log, position, recomputed.hex())
        return None

    def checkpoints_left(self) -> Break | None:
        """A checkpoint past the end of the log: the log was cut short."""
        for position in sorted(self.expected):
            source = self.expected[position].source
            return Break(
                position,
                "checkpoint",
                f"the checkpoint from {source} names position {position}, which the log no "
                "longer holds",
            )
        return None

    def verification(self, found: Break | None) -> Verification:
        return Verification(self.log, self.seen, self.head, self.checked, found)
