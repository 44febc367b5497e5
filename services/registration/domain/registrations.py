"""A deal registration's life: submitted as the rules decided (``engagement``), reviewed,
extended, expired, won, lost or withdrawn.

The aggregate checks a transition, then triggers an event; the event-applying methods only
assign.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

import shared.contracts as published
from services.registration.domain.calendar import (
    REVIEW_DEADLINE_BUSINESS_DAYS,
    add_business_days,
)
from services.registration.domain.customers import CustomerIdentity
from services.registration.domain.engagement import (
    APPROVED,
    CONFLICT,
    EXPIRED,
    EXTENSION,
    LOST,
    MAX_EXTENSIONS,
    OPEN,
    PENDING_REVIEW,
    PROTECTION,
    REJECTED,
    RETURNED,
    WITHDRAWN,
    WON,
    Decision,
    Incumbency,
    RegistrationRuleError,
    TransitionError,
)
from shared.contracts import publishes
from shared.money import Money

REJECTION_REASONS = frozenset(
    {
        "duplicate",
        "not_a_qualified_opportunity",
        "customer_not_eligible",
        "partner_not_eligible",
        "conflict",
        "incomplete_information",
        "other",
    }
)


@publishes(Registered=published.DealRegistered, Approved=published.RegistrationApproved)
class Registration(Aggregate):
    class Registered(Aggregate.Created):
        partner_id: UUID
        customer_key: str
        customer_name: str
        customer_domain: str | None
        customer_email: str | None
        country: str
        product_line: str
        motion: str
        estimated_value: Money
        expected_close: date
        external_id: str | None
        status: str
        protected_until: date | None
        flags: list[dict[str, Any]]
        may_register_again_on: date | None
        submitted_at: datetime
        review_due_at: datetime | None
        conflict_with: UUID | None

    class Approved(Aggregate.Event):
        partner_id: UUID
        customer_key: str
        product_line: str
        motion: str
        by: str
        approved_on: date
        protected_until: date

    @event(Registered)
    def __init__(
        self,
        partner_id: UUID,
        customer_key: str,
        customer_name: str,
        customer_domain: str | None,
        customer_email: str | None,
        country: str,
        product_line: str,
        motion: str,
        estimated_value: Money,
        expected_close: date,
        external_id: str | None,
        status: str,
        protected_until: date | None,
        flags: list[dict[str, Any]],
        may_register_again_on: date | None,
        submitted_at: datetime,
        review_due_at: datetime | None,
        conflict_with: UUID | None,
    ) -> None:
        self.partner_id = partner_id
        self.customer_key = customer_key
        self.customer_name = customer_name
        self.customer_domain = customer_domain
        self.customer_email = customer_email
        self.country = country
        self.product_line = product_line
        self.motion = motion
        self.estimated_value = estimated_value
        self.expected_close = expected_close
        self.external_id = external_id
        self.status = status
        self.protected_until = protected_until
        self.flags = flags
        self.may_register_again_on = may_register_again_on
        self.submitted_at = submitted_at
        self.review_due_at = review_due_at
        self.conflict_with = conflict_with
        self.review_overdue = False
        self.extensions = 0
        self.extension_requested = False
        self.contract_id: UUID | None = None
        self.closed_reason: str | None = None

    # --- submission --------------------------------------------------------------------
    @classmethod
    def submit(
        cls,
        *,
        partner_id: UUID,
        customer: CustomerIdentity,
        customer_name: str,
        customer_domain: str | None,
        customer_email: str | None,
        product_line: str,
        motion: str,
        estimated_value: Money,
        expected_close: date,
        external_id: str | None,
        decision: Decision,
        now: datetime,
    ) -> Registration:
        return cls(
            partner_id=partner_id,
            customer_key=customer.key,
            customer_name=customer_name,
            customer_domain=customer_domain,
            customer_email=customer_email,
            country=customer.country,
            product_line=product_line,
            motion=motion,
            estimated_value=estimated_value,
            expected_close=expected_close,
            external_id=external_id,
            status=decision.status,
            protected_until=decision.protected_until,
            flags=[f.as_data() for f in decision.flags],
            may_register_again_on=decision.may_register_again_on,
            submitted_at=now,
            review_due_at=_review_due(decision.status, now),
            conflict_with=decision.conflict_with,
        )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def poaching_incumbent(self) -> UUID | None:
        for flag in self.flags:
            if flag["rule"] == "poaching":
                return UUID(flag["collides_with"].split(":", 1)[1])
        return None

    def _require(self, *statuses: str, action: str) -> None:
        if self.status not in statuses:
            raise TransitionError(
                f"a registration that is {self.status} cannot be {action} "
                f"(only {', '.join(statuses)})"
            )

    # --- review ----------------------------------------------------------------------------
    @property
    def customer_keys(self) -> tuple[str, ...]:
        """Every key its customer is known by: the claims it holds while protected."""
        named = CustomerIdentity.of(name=self.customer_name, country=self.country)
        if named.name and named.key != self.customer_key:
            return (self.customer_key, named.key)
        return (self.customer_key,)

    def approve(self, *, by: str, today: date) -> None:
        """Approve from review (or from conflict, once the other partner's protection ended).
        The caller takes the customer's claim in the same transaction."""
        self._require(PENDING_REVIEW, CONFLICT, action="approved")
        self.approved(
            partner_id=self.partner_id,
            customer_key=self.customer_key,
            product_line=self.product_line,
            motion=self.motion,
            by=by,
            approved_on=today,
            protected_until=today + PROTECTION,
        )

    @event(Approved)
    def approved(
        self,
        partner_id: UUID,
        customer_key: str,
        product_line: str,
        motion: str,
        by: str,
        approved_on: date,
        protected_until: date,
    ) -> None:
        self.status = APPROVED
        self.protected_until = protected_until
        self.review_due_at = None

    def reject(self, *, by: str, reason_code: str, note: str) -> None:
        self._require(PENDING_REVIEW, CONFLICT, RETURNED, action="rejected")
        if reason_code not in REJECTION_REASONS:
            raise RegistrationRuleError(
                f"unknown reason code {reason_code!r}; one of {sorted(REJECTION_REASONS)}"
            )
        if reason_code == "other" and not note.strip():
            raise RegistrationRuleError("a rejection for reason `other` needs a note")
        self.rejected(by=by, reason_code=reason_code, note=note)

    @event("Rejected")
    def rejected(self, by: str, reason_code: str, note: str) -> None:
        self.status = REJECTED
        self.closed_reason = reason_code
        self.review_due_at = None

    def return_for_information(self, *, by: str, note: str) -> None:
        self._require(PENDING_REVIEW, CONFLICT, action="returned")
        if not note.strip():
            raise RegistrationRuleError("say what information is missing")
        self.returned_for_information(by=by, note=note)

    @event("ReturnedForInformation")
    def returned_for_information(self, by: str, note: str) -> None:
        self.status = RETURNED
        self.review_due_at = None

    def resubmit(
        self,
        *,
        customer: CustomerIdentity,
        customer_name: str,
        customer_domain: str | None,
        customer_email: str | None,
        product_line: str,
        estimated_value: Money,
        expected_close: date,
        decision: Decision,
        now: datetime,
    ) -> None:
        self._require(RETURNED, action="resubmitted")
        status, protected_until = decision.status, decision.protected_until
        self.resubmitted(
            customer_key=customer.key,
            customer_name=customer_name,
            customer_domain=customer_domain,
            customer_email=customer_email,
            country=customer.country,
            product_line=product_line,
            estimated_value=estimated_value,
            expected_close=expected_close,
            status=status,
            protected_until=protected_until,
            flags=[f.as_data() for f in decision.flags],
            may_register_again_on=decision.may_register_again_on,
            submitted_at=now,
            review_due_at=_review_due(status, now),
            conflict_with=decision.conflict_with,
        )
        if status == APPROVED and protected_until is not None:
            # Approved is approved: the rules' approval is published as a manager's is.
            self.approved(
                partner_id=self.partner_id,
                customer_key=self.customer_key,
                product_line=self.product_line,
                motion=self.motion,
                by="auto",
                approved_on=now.date(),
                protected_until=protected_until,
            )

    @event("Resubmitted")
    def resubmitted(
        self,
        customer_key: str,
        customer_name: str,
        customer_domain: str | None,
        customer_email: str | None,
        country: str,
        product_line: str,
        estimated_value: Money,
        expected_close: date,
        status: str,
        protected_until: date | None,
        flags: list[dict[str, Any]],
        may_register_again_on: date | None,
        submitted_at: datetime,
        review_due_at: datetime | None,
        conflict_with: UUID | None,
    ) -> None:
        self.customer_key = customer_key
        self.customer_name = customer_name
        self.customer_domain = customer_domain
        self.customer_email = customer_email
        self.country = country
        self.product_line = product_line
        self.estimated_value = estimated_value
        self.expected_close = expected_close
        self.status = status
        self.protected_until = protected_until
        self.flags = flags
        self.may_register_again_on = may_register_again_on
        self.submitted_at = submitted_at
        self.review_due_at = review_due_at
        self.conflict_with = conflict_with
        self.review_overdue = False

    def note_time(self, now: datetime) -> str | None:
        """What the passing of time means for this registration: ``expired``, ``overdue``."""
        if self.status == APPROVED and self.protected_until and now.date() > self.protected_until:
            self.expired(on=self.protected_until + timedelta(days=1))
            return "expired"
        due = self.review_due_at
        if self.status == PENDING_REVIEW and due and not self.review_overdue and now >= due:
            self.review_fell_overdue(due_at=due)
            return "overdue"
        return None

    @event("ReviewOverdue")
    def review_fell_overdue(self, due_at: datetime) -> None:
        self.review_overdue = True

    @event("Expired")
    def expired(self, on: date) -> None:
        self.status = EXPIRED

    # --- extensions ---------------------------------------------------------------------
    def request_extension(self, *, by: str, note: str) -> None:
        self._require(APPROVED, action="extended")
        if self.extension_requested:
            raise TransitionError("an extension is already waiting for approval")
        if self.extensions >= MAX_EXTENSIONS:
            raise TransitionError(f"at most {MAX_EXTENSIONS} extensions of 30 days")
        self.extension_requested_by(by=by, note=note)

    @event("ExtensionRequested")
    def extension_requested_by(self, by: str, note: str) -> None:
        self.extension_requested = True

    def approve_extension(self, *, by: str) -> date:
        if not self.extension_requested or self.status != APPROVED:
            raise TransitionError("no extension is waiting for approval")
        assert self.protected_until is not None
        protected_until = self.protected_until + EXTENSION
        self.extension_approved(by=by, protected_until=protected_until)
        return protected_until

    @event("ExtensionApproved")
    def extension_approved(self, by: str, protected_until: date) -> None:
        self.extensions += 1
        self.extension_requested = False
        self.protected_until = protected_until

    def decline_extension(self, *, by: str, note: str) -> None:
        if not self.extension_requested:
            raise TransitionError("no extension is waiting for approval")
        self.extension_declined(by=by, note=note)

    @event("ExtensionDeclined")
    def extension_declined(self, by: str, note: str) -> None:
        self.extension_requested = False

    # --- the end of a deal -------------------------------------------------------------------
    def win(self, *, contract_id: UUID, on: date) -> None:
        self._require(*OPEN, EXPIRED, action="won")
        self.won(contract_id=contract_id, on=on)

    @event("Won")
    def won(self, contract_id: UUID, on: date) -> None:
        self.status = WON
        self.contract_id = contract_id
        self.extension_requested = False
        self.review_due_at = None

    def lose(self, *, by: str, on: date, reason: str) -> None:
        self._require(*OPEN, action="lost")
        self.lost(by=by, on=on, reason=reason)

    @event("Lost")
    def lost(self, by: str, on: date, reason: str) -> None:
        self.status = LOST
        self.closed_reason = reason
        self.review_due_at = None

    def withdraw(self, *, by: str, on: date, reason: str) -> None:
        self._require(*OPEN, action="withdrawn")
        self.withdrawn(by=by, on=on, reason=reason)

    @event("Withdrawn")
    def withdrawn(self, by: str, on: date, reason: str) -> None:
        self.status = WITHDRAWN
        self.closed_reason = reason
        self.review_due_at = None

    # --- what others did ---------------------------------------------------------------------
    def note_poaching(self, incumbency: Incumbency) -> None:
        """Tell the incumbent (by this event) that another partner registered its customer."""
        self.incumbent_notified(
            incumbent_partner_id=incumbency.partner_id,
            contract_id=incumbency.contract_id,
            customer_key=self.customer_key,
        )

    @event("IncumbentNotified")
    def incumbent_notified(
        self, incumbent_partner_id: UUID, contract_id: UUID, customer_key: str
    ) -> None:
        pass

    def note_direct_conflict(self, *, direct_deal_id: UUID, owner: str) -> None:
        self.direct_conflict_recorded(direct_deal_id=direct_deal_id, owner=owner)

    @event("DirectConflictRecorded")
    def direct_conflict_recorded(self, direct_deal_id: UUID, owner: str) -> None:
        pass


def _review_due(status: str, now: datetime) -> datetime | None:
    if status != PENDING_REVIEW:
        return None
    return add_business_days(now, REVIEW_DEADLINE_BUSINESS_DAYS)
