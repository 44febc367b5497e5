"""What the registration routers share: the application, roles, bodies and problem mapping."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import Depends, Request
from pydantic import BaseModel, Field

from services.registration.application import (
    Customer,
    ExternalIdTakenError,
    RegistrationApplication,
    UnknownPartnerError,
)
from services.registration.domain.engagement import (
    AlreadyRegisteredError,
    RegistrationRuleError,
    StillProtectedError,
    TransitionError,
)
from services.registration.domain.registrations import Registration
from shared.auth import Allow, Principal, Role
from shared.dependencies import Runtime
from shared.edge import RequestModel
from shared.money import Amount
from shared.problems import Problem


async def registration_app(request: Request) -> RegistrationApplication:
    # Async and without the ``Runtime`` dependency: a sync dependency costs every request a
    # trip through the thread pool, and this one only reads an attribute.
    app = request.app.state.runtime.app
    assert isinstance(app, RegistrationApplication)
    return app


def today(runtime: Runtime) -> date:
    return runtime.clock.time().date()


def now(runtime: Runtime) -> datetime:
    return runtime.clock.time()


App = Annotated[RegistrationApplication, Depends(registration_app)]
Today = Annotated[date, Depends(today)]
Now = Annotated[datetime, Depends(now)]

Staff = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER))]
Writer = Annotated[
    Principal, Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.CRM, Role.PARTNER))
]
Reader = Annotated[
    Principal,
    Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.CRM, Role.AUDITOR, Role.PARTNER)),
]
Crm = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.CRM))]


def rule_problem(error: RegistrationRuleError | AggregateNotFoundError) -> Problem:
    if isinstance(error, AggregateNotFoundError):
        return Problem(404, "not-found", "No such record.")
    if isinstance(error, UnknownPartnerError):
        return Problem(404, "partner-not-found", str(error))
    if isinstance(error, AlreadyRegisteredError):
        return Problem(409, "already-registered", str(error), registration_id=error.registration_id)
    if isinstance(error, ExternalIdTakenError):
        known: dict[str, Any] = {"existing_id": error.entity_id} if error.entity_id else {}
        return Problem(409, "external-id-taken", str(error), record=error.kind, **known)
    if isinstance(error, StillProtectedError):
        return Problem(409, "still-protected", str(error), protected_until=error.until)
    if isinstance(error, TransitionError):
        return Problem(409, "invalid-transition", str(error))
    return Problem(422, "rule-of-engagement", str(error))


EMAIL_PATTERN = r"^[^@\s\u0085\ufeff\u0000]+@[^@\s\u0085\ufeff\u0000]+$"
"""Something at something, without spaces or NUL (which text cannot hold: a field with a pattern
of its own must say so itself, ``shared.openapi`` adds it only to those without). U+0085 and
U+FEFF are named because the regular expressions of JSON Schema (ECMA-262) and of the service
disagree on whether they are spaces."""


class CustomerBody(RequestModel):
    name: str = Field(min_length=1, max_length=300)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    domain: str | None = Field(default=None, max_length=255, examples=["www.acme.co.uk"])
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)

    def to_customer(self) -> Customer:
        return Customer(name=self.name, country=self.country, domain=self.domain, email=self.email)


class Explanation(BaseModel):
    """Why a registration is flagged. Partners see the rule only."""

    rule: str
    collides_with: str | None = None
    matched_keys: list[str] | None = None
    score: Decimal | None = None
    detail: str | None = None
    others: int | None = Field(
        default=None,
        description="How many more records this rule matched than are listed: of the possible "
        "duplicates the strongest five are listed, and the last one listed counts the rest.",
    )


class RegistrationView(BaseModel):
    registration_id: UUID
    partner_id: UUID
    customer_key: str
    customer_name: str
    country: str
    product_line: str
    motion: Literal["sell", "refer"]
    estimated_value: Amount
    expected_close: date
    external_id: str | None
    status: str
    protected_until: date | None
    may_register_again_on: date | None
    flags: list[Explanation]
    review_due_at: datetime | None
    review_overdue: bool
    extensions: int
    extension_requested: bool
    contract_id: UUID | None

    @classmethod
    def of(cls, registration: Registration, principal: Principal) -> RegistrationView:
        return cls(
            registration_id=registration.id,
            partner_id=registration.partner_id,
            customer_key=registration.customer_key,
            customer_name=registration.customer_name,
            country=registration.country,
            product_line=registration.product_line,
            motion=registration.motion,
            estimated_value=Amount.of(registration.estimated_value),
            expected_close=registration.expected_close,
            external_id=registration.external_id,
            status=registration.status,
            protected_until=registration.protected_until,
            may_register_again_on=registration.may_register_again_on,
            flags=[explain(flag, principal) for flag in registration.flags],
            review_due_at=registration.review_due_at,
            review_overdue=registration.review_overdue,
            extensions=registration.extensions,
            extension_requested=registration.extension_requested,
            contract_id=registration.contract_id,
        )


def explain(flag: dict[str, Any], principal: Principal) -> Explanation:
    if principal.role is Role.PARTNER:
        return Explanation(rule=flag["rule"])
    return Explanation(**flag)


def load_visible(
    app: RegistrationApplication,
    registration_id: UUID,
    principal: Principal,
    as_of: datetime | None = None,
) -> Registration:
    try:
        registration = app.registration(registration_id, as_of=as_of)
    except AggregateNotFoundError:
        registration = None
    if registration is None or not principal.may_see_partner(registration.partner_id):
        when = f" as of {as_of.isoformat()}" if as_of else ""
        raise Problem(404, "registration-not-found", f"No registration {registration_id}{when}.")
    return registration


def acting_partner(principal: Principal, partner_id: UUID | None) -> UUID:
    """The partner a request acts for: a partner token acts for itself only."""
    if principal.role is Role.PARTNER:
        if partner_id not in (None, principal.partner_id):
            raise Problem(403, "other-partner", "A partner acts for itself only.")
        assert principal.partner_id is not None
        return principal.partner_id
    if partner_id is None:
        raise Problem(422, "validation-error", "partner_id is required.")
    return partner_id
