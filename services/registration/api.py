"""Registration's HTTP API: one router per resource."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator

from services.registration.application import (
    AlreadyRegisteredError,
    Customer,
    NewContract,
    NewRegistration,
    RegistrationApplication,
    UnknownPartnerError,
)
from services.registration.domain import Contract, Registration, RegistrationRuleError
from shared.auth import Allow, Principal, Role
from shared.money import MoneyBody
from shared.paging import decode_cursor, encode_cursor
from shared.problems import Problem
from shared.web import Pool, Runtime


def registration_app(runtime: Runtime) -> RegistrationApplication:
    assert isinstance(runtime.app, RegistrationApplication)
    return runtime.app


App = Annotated[RegistrationApplication, Depends(registration_app)]


def _rule_problem(error: RegistrationRuleError) -> Problem:
    if isinstance(error, UnknownPartnerError):
        return Problem(422, "unknown-partner", str(error))
    if isinstance(error, AlreadyRegisteredError):
        return Problem(
            409, "already-registered", str(error), registration_id=str(error.registration_id)
        )
    return Problem(422, "rule-of-engagement", str(error))


class CustomerBody(BaseModel):
    name: str = Field(min_length=1, max_length=300)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    domain: str | None = Field(default=None, max_length=255, examples=["www.acme.co.uk"])
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")

    def to_customer(self) -> Customer:
        return Customer(name=self.name, country=self.country, domain=self.domain, email=self.email)


# --- registrations -----------------------------------------------------------------------


class RegistrationRequest(BaseModel):
    partner_id: UUID | None = Field(
        default=None, description="Required, except with a partner token (its own id)"
    )
    customer: CustomerBody
    product_line: str = Field(min_length=1, max_length=100)
    motion: Literal["sell", "refer"]
    estimated_value: MoneyBody = Field(description="Estimated annual contract value")
    expected_close: date
    external_id: str | None = Field(default=None, max_length=200, description="CRM id")


class ConflictExplanation(BaseModel):
    rule: str
    may_register_again_on: date | None
    conflicting_registration_id: UUID | None = Field(
        default=None, description="Shown to vendor staff, never to the partner"
    )


class RegistrationView(BaseModel):
    registration_id: UUID
    partner_id: UUID
    customer_key: str
    customer_name: str
    country: str
    product_line: str
    motion: str
    estimated_value: MoneyBody
    expected_close: date
    external_id: str | None
    status: str
    protected_until: date | None
    conflict: ConflictExplanation | None

    @classmethod
    def of(cls, registration: Registration, principal: Principal) -> RegistrationView:
        conflict = None
        if registration.status == "conflict":
            conflict = ConflictExplanation(
                rule="first-to-register",
                may_register_again_on=registration.may_register_again_on,
                conflicting_registration_id=(
                    None if principal.role is Role.PARTNER else registration.conflict_with
                ),
            )
        return cls(
            registration_id=registration.id,
            partner_id=registration.partner_id,
            customer_key=registration.customer_key,
            customer_name=registration.customer_name,
            country=registration.country,
            product_line=registration.product_line,
            motion=registration.motion,
            estimated_value=MoneyBody.of(registration.estimated_value),
            expected_close=registration.expected_close,
            external_id=registration.external_id,
            status=registration.status,
            protected_until=registration.protected_until,
            conflict=conflict,
        )


class RegistrationSummary(BaseModel):
    registration_id: UUID
    partner_id: UUID
    customer_name: str
    product_line: str
    status: str
    external_id: str | None
    protected_until: date | None


class RegistrationPage(BaseModel):
    registrations: list[RegistrationSummary]
    next_cursor: str | None


Registrant = Annotated[
    Principal, Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.CRM, Role.PARTNER))
]
Reader = Annotated[
    Principal,
    Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.CRM, Role.AUDITOR, Role.PARTNER)),
]

registrations = APIRouter(prefix="/v1/registrations", tags=["registrations"])


@registrations.post("", status_code=201, response_model=RegistrationView, summary="Register a deal")
async def register(
    body: RegistrationRequest, app: App, runtime: Runtime, principal: Registrant
) -> RegistrationView:
    partner_id = body.partner_id
    if principal.role is Role.PARTNER:
        if partner_id not in (None, principal.partner_id):
            raise Problem(403, "other-partner", "A partner registers deals for itself only.")
        partner_id = principal.partner_id
    if partner_id is None:
        raise Problem(422, "validation-error", "partner_id is required.")
    new = NewRegistration(
        partner_id=partner_id,
        customer=body.customer.to_customer(),
        product_line=body.product_line,
        motion=body.motion,
        estimated_value=body.estimated_value.to_money(),
        expected_close=body.expected_close,
        external_id=body.external_id,
    )
    try:
        registration = await run_in_threadpool(app.register_deal, new, runtime.clock.now().date())
    except RegistrationRuleError as error:
        raise _rule_problem(error) from error
    return RegistrationView.of(registration, principal)


@registrations.get("/{registration_id}", response_model=RegistrationView, summary="A registration")
async def get_registration(registration_id: UUID, app: App, principal: Reader) -> RegistrationView:
    try:
        registration = await run_in_threadpool(app.registration, registration_id)
    except AggregateNotFoundError:
        registration = None
    if registration is None or not principal.may_see_partner(registration.partner_id):
        raise Problem(404, "registration-not-found", f"No registration {registration_id}.")
    return RegistrationView.of(registration, principal)


@registrations.get("", response_model=RegistrationPage, summary="Registrations, newest last")
async def list_registrations(
    pool: Pool,
    principal: Reader,
    partner_id: UUID | None = None,
    status: str | None = None,
    external_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> RegistrationPage:
    if principal.role is Role.PARTNER:
        if partner_id not in (None, principal.partner_id):
            raise Problem(403, "other-partner", "A partner sees its own registrations only.")
        partner_id = principal.partner_id
    after = decode_cursor(cursor, 2)
    rows = await pool.fetch(
        "SELECT registration_id, partner_id, customer_name, product_line, status, external_id,"
        " protected_until, registered_at FROM registration_deals"
        " WHERE ($1::uuid IS NULL OR partner_id = $1) AND ($2::text IS NULL OR status = $2)"
        " AND ($3::text IS NULL OR external_id = $3)"
        " AND ($4::timestamptz IS NULL OR (registered_at, registration_id) > ($4, $5::uuid))"
        " ORDER BY registered_at, registration_id LIMIT $6",
        partner_id,
        status,
        external_id,
        None if after is None else _timestamp(after[0]),
        None if after is None else UUID(after[1]),
        limit + 1,
    )
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["registered_at"].isoformat(), page[-1]["registration_id"])
        if len(rows) > limit
        else None
    )
    return RegistrationPage(
        registrations=[
            RegistrationSummary(**{k: v for k, v in dict(r).items() if k != "registered_at"})
            for r in page
        ],
        next_cursor=next_cursor,
    )


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as error:
        raise Problem(400, "bad-cursor", "The cursor is not one this API handed out.") from error


# --- contracts -----------------------------------------------------------------------------


class ContractRequest(BaseModel):
    registration_id: UUID | None = Field(default=None, description="The registration it wins")
    partner_id: UUID | None = Field(default=None, description="None for a direct deal")
    customer: CustomerBody | None = Field(
        default=None, description="Required unless a registration is named"
    )
    start_date: date
    term_months: int = Field(default=12, ge=1, le=120)
    mrr: MoneyBody = Field(description="Recurring amount per month")
    one_time: MoneyBody | None = None
    external_id: str | None = Field(default=None, max_length=200, description="CRM id")

    @model_validator(mode="after")
    def _names_customer(self) -> ContractRequest:
        if self.registration_id is None and self.customer is None:
            raise ValueError("name the customer, or the registration the contract wins")
        return self


class ContractView(BaseModel):
    contract_id: UUID
    customer_key: str
    partner_id: UUID | None
    registration_id: UUID | None
    start_date: date
    term_months: int
    end_date: date
    mrr: MoneyBody
    one_time: MoneyBody | None
    external_id: str | None
    renewal_due_on: date

    @classmethod
    def of(cls, contract: Contract) -> ContractView:
        return cls(
            contract_id=contract.id,
            customer_key=contract.customer_key,
            partner_id=contract.partner_id,
            registration_id=contract.registration_id,
            start_date=contract.start_date,
            term_months=contract.term_months,
            end_date=contract.end_date,
            mrr=MoneyBody.of(contract.mrr),
            one_time=MoneyBody.of(contract.one_time) if contract.one_time else None,
            external_id=contract.external_id,
            renewal_due_on=contract.renewal_due_on,
        )


contracts = APIRouter(prefix="/v1/contracts", tags=["contracts"])


@contracts.post(
    "", status_code=201, response_model=ContractView, summary="Report a contract signed"
)
async def sign(
    body: ContractRequest,
    app: App,
    _: Annotated[Principal, Depends(Allow(Role.ADMIN, Role.CRM))],
) -> ContractView:
    new = NewContract(
        customer=body.customer.to_customer() if body.customer else None,
        partner_id=body.partner_id,
        registration_id=body.registration_id,
        start_date=body.start_date,
        term_months=body.term_months,
        mrr=body.mrr.to_money(),
        one_time=body.one_time.to_money() if body.one_time else None,
        external_id=body.external_id,
    )
    try:
        contract = await run_in_threadpool(app.sign_contract, new)
    except AggregateNotFoundError as error:
        raise Problem(
            422, "unknown-registration", f"No registration {body.registration_id}."
        ) from error
    except RegistrationRuleError as error:
        raise _rule_problem(error) from error
    return ContractView.of(contract)


@contracts.get("/{contract_id}", response_model=ContractView, summary="A contract")
async def get_contract(contract_id: UUID, app: App, principal: Reader) -> ContractView:
    try:
        contract = await run_in_threadpool(app.contract, contract_id)
    except AggregateNotFoundError:
        contract = None
    if contract is None or not principal.may_see_partner(contract.partner_id):
        raise Problem(404, "contract-not-found", f"No contract {contract_id}.")
    return ContractView.of(contract)
