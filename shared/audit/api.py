"""What every service shows an auditor of its log: the events with their causes, a streamed
NDJSON export, the history of an entity (or of a correlation id, or of an actor), and the head of
the hash chain to keep as a checkpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from shared.audit.causes import AUDIT_KEY
from shared.audit.chain import chain_table
from shared.audit.index import ACTOR, CORRELATION, CUSTOMER, index_table
from shared.codec import build_transcoder
from shared.dependencies import Auditor, Pool, Runtime
from shared.edge import storable_parameters
from shared.problems import Problem, problems
from shared.program_dates import ProgramInstant

_transcoder = build_transcoder()


class EventCause(BaseModel):
    """Who recorded the event, and why."""

    actor: str | None = Field(None, description="A token's subject, a service, or a clock")
    role: str | None = None
    request_id: str | None = None
    correlation_id: str | None = Field(
        None, description="Shared by everything one request (or clock run) set in motion"
    )
    causation_id: str | None = Field(
        None, description="`request:<id>`, `<log>:<position>` of the event decided on, or `clock:`"
    )


class LoggedEvent(BaseModel):
    position: int
    stream_id: UUID
    stream_version: int
    type: str
    recorded_at: datetime | None
    cause: EventCause
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[LoggedEvent]
    next_after: int
    head: int


def logged(row: asyncpg.Record) -> LoggedEvent:
    data: dict[str, Any] = _transcoder.decode(bytes(row["state"]))
    recorded_at = data.pop("timestamp", None)
    cause = data.pop(AUDIT_KEY, None) or {}
    return LoggedEvent(
        position=row["notification_id"],
        stream_id=row["originator_id"],
        stream_version=row["originator_version"],
        type=row["topic"],
        recorded_at=recorded_at,
        cause=EventCause(**cause),
        # Amounts stay exact: a decimal as its string, never a float.
        data=jsonable_encoder(data, custom_encoder={bytes: bytes.hex, Decimal: str}),
    )


def _events(runtime: Any) -> str:
    return f'"{runtime.schema}"."{runtime.name}_events"'


EventType = Annotated[str, Field(pattern="^[A-Z][A-Za-z0-9]{0,99}$", examples=["DealRegistered"])]
"""An event's type, as the log names it: ``DealRegistered``, ``TierChanged``."""

AsOf = Annotated[
    ProgramInstant | None,
    Query(
        description="Answer as the log stood at this instant (ISO 8601 with a zone): only the "
        "events recorded by then count."
    ),
]

_COLUMNS = "e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"

LAST_POSITION = 2**63 - 1
"""A log position is a PostgreSQL bigint."""

audit_router = APIRouter(tags=["audit"], dependencies=[Depends(storable_parameters)])


@audit_router.get("/v1/events", response_model=EventPage, summary="Read this service's log")
async def read_events(
    runtime: Runtime,
    pool: Pool,
    _: Auditor,
    after: Annotated[int, Query(ge=0, le=LAST_POSITION, description="Position to read after.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    table = _events(runtime)
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM {table} e"  # noqa: S608 (names from settings, values bound)
        " WHERE e.notification_id > $1 ORDER BY e.notification_id LIMIT $2",
        after,
        limit,
    )
    head = await pool.fetchval(f"SELECT coalesce(max(notification_id), 0) FROM {table}")  # noqa: S608
    events = [logged(row) for row in rows]
    return EventPage(events=events, next_after=events[-1].position if events else after, head=head)


@audit_router.get(
    "/v1/events/export",
    summary="The log (or a slice of it) as NDJSON, streamed, with each position's chain hash",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export_events(
    runtime: Runtime,
    pool: Pool,
    _: Auditor,
    since: Annotated[ProgramInstant | None, Query(description="Recorded at or after")] = None,
    until: Annotated[ProgramInstant | None, Query(description="Recorded before")] = None,
    types: Annotated[
        list[EventType] | None,
        Query(alias="type", description="Event types; repeat for several"),
    ] = None,
    after: Annotated[
        int, Query(ge=0, le=LAST_POSITION, description="Positions after this one")
    ] = 0,
) -> StreamingResponse:
    events, chain = _events(runtime), f'"{runtime.schema}"."{chain_table(runtime.name)}"'
    query = (
        f"SELECT {_COLUMNS}, c.hash FROM {events} e"  # noqa: S608 (names from settings)
        f" LEFT JOIN {chain} c ON c.position = e.notification_id"
        " WHERE e.notification_id > $1 AND ($2::text[] IS NULL OR e.topic = ANY($2))"
        " ORDER BY e.notification_id"
    )

    async def lines() -> AsyncIterator[bytes]:
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            batch: list[str] = []
            async for row in conn.cursor(query, after, types, prefetch=500):
                event = logged(row)
                if (since and event.recorded_at and event.recorded_at < since) or (
                    until and event.recorded_at and event.recorded_at >= until
                ):
                    continue
                line = event.model_dump(mode="json")
                line["log"] = runtime.name
                line["chain_hash"] = bytes(row["hash"]).hex() if row["hash"] else None
                batch.append(json.dumps(line, separators=(",", ":")))
                if len(batch) == 500:
                    yield ("\n".join(batch) + "\n").encode()
                    batch = []
            if batch:
                yield ("\n".join(batch) + "\n").encode()

    filename = f"{runtime.name}-events.ndjson"
    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


class History(BaseModel):
    key: str = Field(description="The keys the events were found under, space-separated")
    events: list[LoggedEvent]
    next_after: int | None = Field(None, description="Pass as `after` for the next page")


async def _history(
    runtime: Any, pool: asyncpg.Pool, keys: list[str], after: int, limit: int
) -> History:
    """The events under every one of ``keys`` (all of them, for none), in the log's order."""
    index = f'"{runtime.schema}"."{index_table(runtime.name)}"'
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM {_events(runtime)} e"  # noqa: S608 (names from settings)
        " WHERE e.notification_id > $2 AND (cardinality($1::text[]) = 0 OR e.notification_id IN"
        f"  (SELECT position FROM {index} WHERE key = ANY($1) AND position > $2"
        "   GROUP BY position HAVING count(*) = cardinality($1::text[])))"
        " ORDER BY e.notification_id LIMIT $3",
        keys,
        after,
        limit,
    )
    events = [logged(row) for row in rows]
    return History(
        key=" ".join(keys),
        events=events,
        next_after=events[-1].position if len(events) == limit else None,
    )


Limit = Annotated[int, Query(ge=1, le=1000)]
After = Annotated[int, Query(ge=0, le=LAST_POSITION)]


@audit_router.get(
    "/v1/history/{entity_id}",
    response_model=History,
    summary="Every event of this service's log about an entity, in order, with who and why",
    description="An entity is anything with an id: a registration, a customer, a partner, a "
    "contract, a statement. Its own stream and every event naming it are listed.",
)
async def entity_history(
    entity_id: UUID, runtime: Runtime, pool: Pool, _: Auditor, after: After = 0, limit: Limit = 100
) -> History:
    return await _history(runtime, pool, [str(entity_id)], after, limit)


@audit_router.get(
    "/v1/history",
    response_model=History,
    summary="Every event of this service's log about a customer, with a correlation id, or by "
    "an actor",
    description="Filters combine: the events that match every one given. With none, every event"
    " of the log, in order.",
)
async def traced_history(
    runtime: Runtime,
    pool: Pool,
    _: Auditor,
    customer_key: Annotated[str | None, Query(description="A customer's matching key")] = None,
    correlation_id: str | None = None,
    actor: Annotated[str | None, Query(description="A token's subject, or a service")] = None,
    after: After = 0,
    limit: Limit = 100,
) -> History:
    given = {
        CUSTOMER: customer_key,
        CORRELATION: correlation_id,
        ACTOR: actor,
    }
    chosen = [prefix + value for prefix, value in given.items() if value is not None]
    return await _history(runtime, pool, chosen, after, limit)


class ChainHeadView(BaseModel):
    log: str
    position: int
    hash: str = Field(description="SHA-256 of the chain at that position, hex")
    events: int


@audit_router.get(
    "/v1/audit/chain",
    response_model=ChainHeadView,
    responses=problems(404),
    summary="The head of this log's hash chain: keep it, and `dealreg audit verify` checks it",
)
async def chain_head_view(runtime: Runtime, pool: Pool, _: Auditor) -> ChainHeadView:
    chain = f'"{runtime.schema}"."{chain_table(runtime.name)}"'
    row = await pool.fetchrow(
        f"SELECT position, hash, (SELECT count(*) FROM {chain}) AS n"  # noqa: S608
        f" FROM {chain} ORDER BY position DESC LIMIT 1"
    )
    if row is None:
        raise Problem(404, "empty-log", f"The {runtime.name} log holds no event yet.")
    return ChainHeadView(
        log=runtime.name, position=row["position"], hash=bytes(row["hash"]).hex(), events=row["n"]
    )
