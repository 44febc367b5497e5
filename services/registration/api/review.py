"""The channel managers' review queue and their decisions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.registration.api.common import (
    App,
    Explanation,
    Now,
    RegistrationView,
    Staff,
    Today,
    rule_problem,
)
from services.registration.domain.engagement import RegistrationRuleError
from services.registration.domain.registrations import REJECTION_REASONS, Registration
from shared.dependencies import Pool
from shared.edge import RequestModel
from shared.paging import Cursor, unknown_cursor

review = APIRouter(tags=["review"])


class QueueItem(BaseModel):
    registration_id: UUID
    partner_id: UUID
    customer_name: str
    customer_key: str
    product_line: str
    status: str
    reasons: list[str]
    explanation: list[Explanation]
    submitted_at: datetime
    waiting_hours: float
    review_due_at: datetime | None
    review_overdue: bool
    extension_requested: bool


class Queue(BaseModel):
    items: list[QueueItem]
    next_cursor: str | None


QueueStatus = Literal["pending_review", "conflict", "returned", "extension_requested"]


HOURS_IN_A_CENTURY = 100 * 366 * 24
"""The oldest a waiting registration can be asked for (an instant a century back stays a
date)."""


@review.get("/v1/review-queue", response_model=Queue, summary="What waits for a channel manager")
async def queue(
    pool: Pool,
    _: Staff,
    now: Now,
    status: QueueStatus | None = None,
    partner_id: UUID | None = None,
    reason: Annotated[
        str | None, Query(description="A flag's rule, e.g. possible-duplicate")
    ] = None,
    older_than_hours: Annotated[float | None, Query(ge=0, le=HOURS_IN_A_CENTURY)] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> Queue:
    try:
        after = UUID(cursor) if cursor else None
    except ValueError as error:
        raise unknown_cursor() from error
    cutoff = now - timedelta(hours=older_than_hours) if older_than_hours is not None else None
    rows = await pool.fetch(
        "SELECT registration_id, partner_id, customer_name, customer_key, product_line, status,"
        " reasons, flags, submitted_at, review_due_at, review_overdue, extension_requested"
        " FROM registration_deals WHERE CASE"
        "   WHEN $1::text IS NULL THEN"
        "     status = ANY('{pending_review,conflict,returned}') OR extension_requested"
        "   WHEN $1 = 'extension_requested' THEN extension_requested"
        "   ELSE status = $1 END"
        " AND ($2::uuid IS NULL OR partner_id = $2) AND ($3::text IS NULL OR $3 = ANY(reasons))"
        " AND ($4::timestamptz IS NULL OR submitted_at <= $4)"
        " AND ($5::boolean IS NULL OR review_overdue = $5)"
        " AND ($6::uuid IS NULL OR registration_id > $6)"
        " ORDER BY registration_id LIMIT $7",
        status,
        partner_id,
        reason,
        cutoff,
        overdue,
        after,
        limit + 1,
    )
    items = [
        QueueItem(
            registration_id=row["registration_id"],
            partner_id=row["partner_id"],
            customer_name=row["customer_name"],
            customer_key=row["customer_key"],
            product_line=row["product_line"],
            status=row["status"],
            reasons=row["reasons"],
            explanation=[Explanation(**flag) for flag in json.loads(row["flags"])],
            submitted_at=row["submitted_at"],
            waiting_hours=round((now - row["submitted_at"]).total_seconds() / 3600, 2),
            review_due_at=row["review_due_at"],
            review_overdue=row["review_overdue"],
            extension_requested=row["extension_requested"],
        )
        for row in rows[:limit]
    ]
    next_cursor = str(items[-1].registration_id) if len(rows) > limit else None
    return Queue(items=items, next_cursor=next_cursor)


class Rejection(RequestModel):
    reason_code: Literal[tuple(sorted(REJECTION_REASONS))]  # type: ignore[valid-type]
    note: str = Field(default="", max_length=2000)


class Note(RequestModel):
    note: str = Field(default="", max_length=2000)


async def _decide(
    app: App, action: object, *args: object, principal: Staff, **kwargs: object
) -> RegistrationView:
    try:
        registration: Registration = await run_in_threadpool(action, *args, **kwargs)  # type: ignore[arg-type]
    except (RegistrationRuleError, AggregateNotFoundError) as error:
        raise rule_problem(error) from error
    return RegistrationView.of(registration, principal)


@review.post(
    "/v1/registrations/{registration_id}/approval",
    response_model=RegistrationView,
    summary="Approve: protection for 90 days from today",
)
async def approve(
    registration_id: UUID, app: App, today: Today, principal: Staff
) -> RegistrationView:
    return await _decide(
        app, app.approve, registration_id, principal=principal, by=principal.subject, today=today
    )


@review.post(
    "/v1/registrations/{registration_id}/rejection",
    response_model=RegistrationView,
    summary="Reject, with a reason code",
)
async def reject(
    registration_id: UUID, body: Rejection, app: App, principal: Staff
) -> RegistrationView:
    return await _decide(
        app,
        app.reject,
        registration_id,
        principal=principal,
        by=principal.subject,
        reason_code=body.reason_code,
        note=body.note,
    )


@review.post(
    "/v1/registrations/{registration_id}/return",
    response_model=RegistrationView,
    summary="Return to the partner for more information",
)
async def return_(
    registration_id: UUID, body: Note, app: App, principal: Staff
) -> RegistrationView:
    return await _decide(
        app,
        app.return_for_information,
        registration_id,
        principal=principal,
        by=principal.subject,
        note=body.note,
    )


@review.post(
    "/v1/registrations/{registration_id}/extension-approval",
    response_model=RegistrationView,
    summary="Approve 30 more days of protection",
)
async def approve_extension(registration_id: UUID, app: App, principal: Staff) -> RegistrationView:
    return await _decide(
        app, app.approve_extension, registration_id, principal=principal, by=principal.subject
    )


@review.post(
    "/v1/registrations/{registration_id}/extension-decline",
    response_model=RegistrationView,
    summary="Decline a requested extension",
)
async def decline_extension(
    registration_id: UUID, body: Note, app: App, principal: Staff
) -> RegistrationView:
    return await _decide(
        app,
        app.decline_extension,
        registration_id,
        principal=principal,
        by=principal.subject,
        note=body.note,
    )
