"""Registrations: submit, read, list, and what the partner does next."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.registration.api.common import (
    App,
    CustomerBody,
    Now,
    Reader,
    RegistrationView,
    Today,
    Writer,
    acting_partner,
    load_visible,
    rule_problem,
)
from services.registration.application import Changes, NewRegistration
from services.registration.domain.engagement import STATUSES, RegistrationRuleError
from services.registration.domain.registrations import Registration
from shared.audit.api import AsOf
from shared.auth import Role
from shared.dependencies import Pool
from shared.edge import RequestModel
from shared.money import MoneyBody
from shared.paging import Cursor, decode_cursor, encode_cursor
from shared.problems import Problem, problems

registrations = APIRouter(prefix="/v1/registrations", tags=["registrations"])


class RegistrationRequest(RequestModel):
    partner_id: UUID = Field(description="The partner registering (a partner token: its own)")
    customer: CustomerBody
    product_line: str = Field(min_length=1, max_length=100)
    motion: Literal["sell", "refer"]
    estimated_value: MoneyBody = Field(description="Estimated annual contract value")
    expected_close: date
    external_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="CRM opportunity id; unique"
    )

    def command(self, partner_id: UUID) -> NewRegistration:
        return NewRegistration(
            partner_id=partner_id,
            customer=self.customer.to_customer(),
            product_line=self.product_line,
            motion=self.motion,
            estimated_value=self.estimated_value.to_money(),
            expected_close=self.expected_close,
            external_id=self.external_id,
        )


@registrations.post(
    "",
    status_code=201,
    response_model=RegistrationView,
    summary="Register a deal",
    responses=problems(404),
)
async def register(
    body: RegistrationRequest, app: App, principal: Writer, request: Request
) -> RegistrationView:
    new = body.command(acting_partner(principal, body.partner_id))
    clock = request.app.state.runtime.clock

    def register_now() -> Registration:
        # The service's present is read in the thread that registers (it reads the clock's
        # record): one trip through the thread pool a request, not two.
        return app.register_deal(new, clock.time())

    try:
        registration = await run_in_threadpool(register_now)
    except RegistrationRuleError as error:
        raise rule_problem(error) from error
    return RegistrationView.of(registration, principal)


class RegistrationSummary(BaseModel):
    registration_id: UUID
    partner_id: UUID
    customer_name: str
    customer_key: str
    product_line: str
    motion: str
    status: str
    external_id: str | None
    protected_until: date | None
    reasons: list[str]
    registered_at: datetime


class RegistrationPage(BaseModel):
    registrations: list[RegistrationSummary]
    next_cursor: str | None


Status = Literal[STATUSES]  # type: ignore[valid-type]


@registrations.get("", response_model=RegistrationPage, summary="Registrations, oldest first")
async def list_registrations(
    pool: Pool,
    principal: Reader,
    partner_id: UUID | None = None,
    status: Status | None = None,
    external_id: str | None = None,
    customer_key: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> RegistrationPage:
    if principal.role is Role.PARTNER:
        partner_id = acting_partner(principal, partner_id)
    after = decode_cursor(cursor, datetime.fromisoformat, UUID)
    after_at, after_id = after if after else (None, None)
    rows = await pool.fetch(
        "SELECT registration_id, partner_id, customer_name, customer_key, product_line, motion,"
        " status, external_id, protected_until, reasons, registered_at FROM registration_deals"
        " WHERE ($1::uuid IS NULL OR partner_id = $1) AND ($2::text IS NULL OR status = $2)"
        " AND ($3::text IS NULL OR external_id = $3) AND ($4::text IS NULL OR customer_key = $4)"
        " AND ($5::timestamptz IS NULL OR (registered_at, registration_id) > ($5, $6::uuid))"
        " ORDER BY registered_at, registration_id LIMIT $7",
        partner_id,
        status,
        external_id,
        customer_key,
        after_at,
        after_id,
        limit + 1,
    )
    page = [RegistrationSummary(**dict(row)) for row in rows[:limit]]
    next_cursor = (
        encode_cursor(page[-1].registered_at.isoformat(), page[-1].registration_id)
        if len(rows) > limit
        else None
    )
    return RegistrationPage(registrations=page, next_cursor=next_cursor)


@registrations.get(
    "/by-external-id/{external_id}",
    response_model=RegistrationView,
    summary="A registration by its CRM id",
)
async def registration_by_external_id(
    external_id: str, app: App, principal: Reader
) -> RegistrationView:
    unknown = Problem(
        404, "registration-not-found", f"No registration has the CRM id {external_id!r}."
    )
    try:
        registration_id = await run_in_threadpool(app.by_external_id, "registration", external_id)
        registration = await run_in_threadpool(load_visible, app, registration_id, principal)
    except (AggregateNotFoundError, Problem):  # another partner's: its id is not told either
        raise unknown from None
    return RegistrationView.of(registration, principal)


@registrations.get(
    "/{registration_id}",
    response_model=RegistrationView,
    summary="A registration, with its explanation",
)
async def get_registration(
    registration_id: UUID, app: App, principal: Reader, as_of: AsOf = None
) -> RegistrationView:
    registration = await run_in_threadpool(load_visible, app, registration_id, principal, as_of)
    return RegistrationView.of(registration, principal)


class ResubmitRequest(RequestModel):
    customer: CustomerBody
    product_line: str = Field(min_length=1, max_length=100)
    estimated_value: MoneyBody
    expected_close: date


class Note(RequestModel):
    note: str = Field(default="", max_length=2000)


class Closing(RequestModel):
    reason: str = Field(default="", max_length=2000)
    on: date | None = Field(default=None, description="Defaults to today")


async def _partner_action(
    app: App,
    registration_id: UUID,
    principal: Writer,
    action: object,
    *args: object,
    **kwargs: object,
) -> RegistrationView:
    registration = await run_in_threadpool(load_visible, app, registration_id, principal)
    try:
        updated: Registration = await run_in_threadpool(action, registration.id, *args, **kwargs)  # type: ignore[arg-type]
    except RegistrationRuleError as error:
        raise rule_problem(error) from error
    return RegistrationView.of(updated, principal)


@registrations.post(
    "/{registration_id}/resubmission",
    response_model=RegistrationView,
    summary="Resubmit a registration returned for more information",
)
async def resubmit(
    registration_id: UUID, body: ResubmitRequest, app: App, now: Now, principal: Writer
) -> RegistrationView:
    changes = Changes(
        customer=body.customer.to_customer(),
        product_line=body.product_line,
        estimated_value=body.estimated_value.to_money(),
        expected_close=body.expected_close,
    )
    return await _partner_action(app, registration_id, principal, app.resubmit, changes, now)


@registrations.post(
    "/{registration_id}/extension-request",
    response_model=RegistrationView,
    summary="Ask for 30 more days of protection (at most twice)",
)
async def request_extension(
    registration_id: UUID, body: Note, app: App, principal: Writer
) -> RegistrationView:
    return await _partner_action(
        app, registration_id, principal, app.request_extension, by=principal.subject, note=body.note
    )


@registrations.post(
    "/{registration_id}/withdrawal",
    response_model=RegistrationView,
    summary="Withdraw: the protection ends at once",
)
async def withdraw(
    registration_id: UUID, body: Closing, app: App, today: Today, principal: Writer
) -> RegistrationView:
    return await _partner_action(
        app,
        registration_id,
        principal,
        app.withdraw,
        by=principal.subject,
        on=body.on or today,
        reason=body.reason,
    )


@registrations.post(
    "/{registration_id}/loss",
    response_model=RegistrationView,
    summary="Report the deal lost (closed-lost): the protection ends at once",
)
async def lose(
    registration_id: UUID, body: Closing, app: App, today: Today, principal: Writer
) -> RegistrationView:
    return await _partner_action(
        app,
        registration_id,
        principal,
        app.mark_lost,
        by=principal.subject,
        on=body.on or today,
        reason=body.reason,
    )
