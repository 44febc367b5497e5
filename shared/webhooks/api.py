"""Every service's webhook deliveries: the attempt log, manual redelivery, recovery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel

from shared.auth import Allow, Principal, Role
from shared.dependencies import Pool, Runtime
from shared.edge import REQUEST_BODY_LIMIT, RequestModel, storable_parameters
from shared.paging import Cursor, decode_cursor, encode_cursor
from shared.problems import Problem, problems
from shared.webhooks.outbox import tables

deliveries = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhook deliveries"],
    dependencies=[Depends(storable_parameters)],
    max_body_size=REQUEST_BODY_LIMIT,
)

Watcher = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.AUDITOR, Role.PARTNER))]
Operator = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.PARTNER))]


class DeliveryView(BaseModel):
    message_id: str
    endpoint_id: UUID
    type: str
    occurred_at: datetime
    status: str
    """``pending`` (with its next attempt), ``delivered`` or ``failed`` (schedule spent, or
    410 Gone)."""
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryView]
    next_cursor: str | None


class AttemptView(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None


class Requeued(BaseModel):
    requeued: int


class Recovery(RequestModel):
    endpoint_id: UUID
    since: AwareDatetime


def _scope(principal: Principal) -> UUID | None:
    """A partner reaches the deliveries to its own endpoints only."""
    return principal.partner_id if principal.role is Role.PARTNER else None


def _names(runtime: Runtime) -> dict[str, str]:
    return tables(runtime.name)


@deliveries.get("/deliveries", response_model=DeliveryPage, summary="Deliveries, newest first")
async def list_deliveries(
    pool: Pool,
    runtime: Runtime,
    principal: Watcher,
    endpoint_id: UUID | None = None,
    message_id: str | None = None,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> DeliveryPage:
    t = _names(runtime)
    after = decode_cursor(cursor, int, str)
    rows = await pool.fetch(
        f"SELECT d.message_id, d.endpoint_id, m.type, m.occurred_at, d.status, d.attempts,"  # noqa: S608
        " d.next_attempt_at, d.last_status, d.last_error, d.delivered_at, m.position"
        f" FROM {t['deliveries']} d JOIN {t['messages']} m USING (message_id)"
        f" JOIN {t['endpoints']} e USING (endpoint_id)"
        " WHERE ($1::uuid IS NULL OR e.partner_id = $1)"
        " AND ($2::uuid IS NULL OR d.endpoint_id = $2)"
        " AND ($3::text IS NULL OR d.message_id = $3) AND ($4::text IS NULL OR d.status = $4)"
        " AND ($5::bigint IS NULL OR (m.position, d.endpoint_id::text) < ($5, $6))"
        " ORDER BY m.position DESC, d.endpoint_id::text DESC LIMIT $7",
        _scope(principal),
        endpoint_id,
        message_id,
        status,
        int(after[0]) if after else None,
        after[1] if after else None,
        limit + 1,
    )
    page = rows[:limit]
    last = page[-1] if page else None
    return DeliveryPage(
        deliveries=[
            DeliveryView(**{k: v for k, v in dict(r).items() if k != "position"}) for r in page
        ],
        next_cursor=encode_cursor(last["position"], last["endpoint_id"])
        if last is not None and len(rows) > limit
        else None,
    )


async def _own_delivery(
    pool: asyncpg.Pool,
    t: dict[str, str],
    principal: Principal,
    message_id: str,
    endpoint_id: UUID | None,
) -> list[Any]:
    rows = await pool.fetch(
        f"SELECT d.message_id, d.endpoint_id FROM {t['deliveries']} d"  # noqa: S608
        f" JOIN {t['endpoints']} e USING (endpoint_id)"
        " WHERE d.message_id = $1 AND ($2::uuid IS NULL OR d.endpoint_id = $2)"
        " AND ($3::uuid IS NULL OR e.partner_id = $3)",
        message_id,
        endpoint_id,
        _scope(principal),
    )
    if not rows:
        raise Problem(404, "delivery-not-found", f"No delivery of message {message_id}.")
    return rows


@deliveries.get(
    "/deliveries/{message_id}/attempts",
    response_model=list[AttemptView],
    summary="Every attempt of a message to an endpoint",
)
async def list_attempts(
    message_id: str,
    endpoint_id: UUID,
    pool: Pool,
    runtime: Runtime,
    principal: Watcher,
) -> list[AttemptView]:
    t = _names(runtime)
    await _own_delivery(pool, t, principal, message_id, endpoint_id)
    rows = await pool.fetch(
        f"SELECT attempt, attempted_at, status_code, duration_ms, error FROM {t['attempts']}"  # noqa: S608
        " WHERE message_id = $1 AND endpoint_id = $2 ORDER BY attempt_id",
        message_id,
        endpoint_id,
    )
    return [AttemptView(**dict(row)) for row in rows]


@deliveries.post(
    "/deliveries/{message_id}/redelivery",
    response_model=Requeued,
    summary="Send a message again now (to one endpoint, or to every endpoint that had it)",
)
async def redeliver(
    message_id: str,
    pool: Pool,
    runtime: Runtime,
    principal: Operator,
    endpoint_id: UUID | None = None,
) -> Requeued:
    t = _names(runtime)
    rows = await _own_delivery(pool, t, principal, message_id, endpoint_id)
    result = await pool.execute(
        f"UPDATE {t['deliveries']} SET status = 'pending', next_attempt_at = now(),"  # noqa: S608
        " updated_at = now() WHERE message_id = $1 AND endpoint_id = ANY($2::uuid[])",
        message_id,
        [row["endpoint_id"] for row in rows],
    )
    return Requeued(requeued=int(result.split()[-1]))


@deliveries.post(
    "/recovery",
    response_model=Requeued,
    summary="Send again every failed message to an endpoint since an instant",
    responses=problems(404),
)
async def recover(body: Recovery, pool: Pool, runtime: Runtime, principal: Operator) -> Requeued:
    t = _names(runtime)
    owner = await pool.fetchrow(
        f"SELECT partner_id FROM {t['endpoints']} WHERE endpoint_id = $1",  # noqa: S608
        body.endpoint_id,
    )
    scope = _scope(principal)
    if owner is None or (scope is not None and owner["partner_id"] != scope):
        raise Problem(404, "endpoint-not-found", f"No webhook endpoint {body.endpoint_id}.")
    result = await pool.execute(
        f"UPDATE {t['deliveries']} d SET status = 'pending', next_attempt_at = now(),"  # noqa: S608
        f" updated_at = now() FROM {t['messages']} m WHERE m.message_id = d.message_id"
        " AND d.endpoint_id = $1 AND d.status = 'failed' AND m.occurred_at >= $2",
        body.endpoint_id,
        body.since,
    )
    return Requeued(requeued=int(result.split()[-1]))
