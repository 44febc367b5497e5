"""Rules of engagement: who may claim a customer, for how long, and what happens to the claim.

The aggregates check a rule, then trigger an event; the event-applying methods only assign.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

import shared.contracts as published
from services.registration.domain.calendar import (
    REVIEW_DEADLINE_BUSINESS_DAYS,
    add_business_days,
)
from services.registration.domain.customers import CustomerIdentity
from shared.contracts import publishes
from shared.money import Money

PROTECTION = timedelta(days=90)
EXTENSION = timedelta(days=30)
MAX_EXTENSIONS = 2

APPROVED = "approved"
PENDING_REVIEW = "pending_review"
CONFLICT = "conflict"
RETURNED = "returned"
REJECTED = "rejected"
EXPIRED = "expired"
WON = "won"
LOST = "lost"
WITHDRAWN = "withdrawn"
OPEN = frozenset({APPROVED, PENDING_REVIEW, CONFLICT, RETURNED})
STATUSES = (APPROVED, PENDING_REVIEW, CONFLICT, RETURNED, REJECTED, EXPIRED, WON, LOST, WITHDRAWN)

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

_CLAIM_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dealreg:customer-claim")


class RegistrationRuleError(ValueError):
    """A request that breaks a rule of engagement; nothing is recorded."""


class TransitionError(RegistrationRuleError):
    """The registration is not in a state that allows this."""


@dataclass(frozen=True)
class Flag:
    """Why a registration is not simply approved: the rule, the keys that matched, how closely,
    and what it collides with. Channel managers see all of it; partners see the rule only."""

    rule: str
    collides_with: str
    """``registration:<id>`` or ``contract:<id>``."""
    matched_keys: tuple[str, ...] = ()
    score: Decimal | None = None
    detail: str = ""

    def as_data(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "collides_with": self.collides_with,
            "matched_keys": list(self.matched_keys),
            "score": self.score,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Incumbency:
    """An active contract of another partner whose renewal window is open."""

    contract_id: UUID
    partner_id: UUID
    end_date: date


@dataclass(frozen=True)
class Assessment:
    """What the rules found about a submission, before anything is recorded."""

    holder: CustomerClaim | None
    duplicates: tuple[Flag, ...]
    incumbency: Incumbency | None
    good_standing: bool

    def outcome(self, today: date) -> tuple[str, list[Flag], date | None, date | None]:
        """Status, flags, protection end and, in conflict, when the partner may register again."""
        flags = list(self.duplicates)
        if self.incumbency is not None:
            flags.append(
                Flag(
                    rule="poaching",
                    collides_with=f"contract:{self.incumbency.contract_id}",
                    matched_keys=("customer_key",),
                    detail=f"the customer's contract through another partner ends on "
                    f"{self.incumbency.end_date.isoformat()}",
                )
            )
        if not self.good_standing:
            flags.append(
                Flag(rule="partner-standing", collides_with="", detail="not in good standing")
            )
        if self.holder is not None:
            flags.insert(
                0,
                Flag(
                    rule="first-to-register",
                    collides_with=f"registration:{self.holder.registration_id}",
                    matched_keys=("customer_key", "product_line"),
                    score=Decimal(1),
                ),
            )
            held_until = self.holder.protected_until or today
            return CONFLICT, flags, None, held_until + timedelta(days=1)
        needs_review = self.duplicates or not self.good_standing
        if needs_review:
            return PENDING_REVIEW, flags, None, None
        return APPROVED, flags, today + PROTECTION, None


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
        assessment: Assessment,
        now: datetime,
    ) -> Registration:
        status, flags, protected_until, again_on = assessment.outcome(now.date())
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
            status=status,
            protected_until=protected_until,
            flags=[f.as_data() for f in flags],
            may_register_again_on=again_on,
            submitted_at=now,
            review_due_at=_review_due(status, now),
            conflict_with=assessment.holder.registration_id if assessment.holder else None,
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
        assessment: Assessment,
        now: datetime,
    ) -> None:
        self._require(RETURNED, action="resubmitted")
        status, flags, protected_until, again_on = assessment.outcome(now.date())
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
            flags=[f.as_data() for f in flags],
            may_register_again_on=again_on,
            submitted_at=now,
            review_due_at=_review_due(status, now),
            conflict_with=assessment.holder.registration_id if assessment.holder else None,
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


class CustomerClaim(Aggregate):
    """Who holds a customer key for a product line. Its id derives from the key, so of two
    racing registrations exactly one creates (or moves) it; the other retries and finds it."""

    @staticmethod
    def create_id(customer_key: str, product_line: str, **_: object) -> UUID:
        return uuid5(_CLAIM_NAMESPACE, f"{customer_key}|{product_line.casefold()}")

    @event("Claimed")
    def __init__(
        self,
        customer_key: str,
        product_line: str,
        registration_id: UUID,
        partner_id: UUID,
        protected_until: date,
    ) -> None:
        self.customer_key = customer_key
        self.product_line = product_line
        self.registration_id: UUID | None = registration_id
        self.partner_id: UUID | None = partner_id
        self.protected_until: date | None = protected_until

    def protects_on(self, day: date) -> bool:
        return self.protected_until is not None and day <= self.protected_until

    def held_by_other_than(self, partner_id: UUID, day: date) -> bool:
        return self.protects_on(day) and self.partner_id != partner_id

    def take(self, *, registration_id: UUID, partner_id: UUID, protected_until: date) -> None:
        self.reclaimed(
            registration_id=registration_id, partner_id=partner_id, protected_until=protected_until
        )

    @event("Reclaimed")
    def reclaimed(self, registration_id: UUID, partner_id: UUID, protected_until: date) -> None:
        self.registration_id = registration_id
        self.partner_id = partner_id
        self.protected_until = protected_until

    def extend(self, *, registration_id: UUID, protected_until: date) -> None:
        if self.registration_id == registration_id:
            self.extended(protected_until=protected_until)

    @event("Extended")
    def extended(self, protected_until: date) -> None:
        self.protected_until = protected_until

    def release(self, *, registration_id: UUID, reason: str) -> bool:
        """Let go at once (won, lost, withdrawn, expired); only the holding registration can."""
        if self.registration_id != registration_id or self.protected_until is None:
            return False
        self.released(registration_id=registration_id, reason=reason)
        return True

    @event("Released")
    def released(self, registration_id: UUID, reason: str) -> None:
        self.registration_id = None
        self.partner_id = None
        self.protected_until = None


@dataclass
class CustomerClaims:
    """The claims on every key a customer is known by, for one product line. A registration
    protected holds them all, taken in the transaction that records it: two registrations that
    share any key cannot both be protected (the second to save finds the claim moved)."""

    customer_keys: tuple[str, ...]
    product_line: str
    held: dict[str, CustomerClaim | None]

    @classmethod
    def found(
        cls,
        customer_keys: Sequence[str],
        product_line: str,
        claim: Callable[[UUID], CustomerClaim | None],
    ) -> CustomerClaims:
        """The claims on the keys, each as ``claim`` finds it by its id (the log, a batch)."""
        held = {key: claim(CustomerClaim.create_id(key, product_line)) for key in customer_keys}
        return cls(tuple(customer_keys), product_line, held)

    def of_partner(self, partner_id: UUID, day: date) -> CustomerClaim | None:
        """A claim the partner itself holds on one of the keys: it registered this already."""
        return next(
            (
                claim
                for claim in self.held.values()
                if claim is not None and claim.protects_on(day) and claim.partner_id == partner_id
            ),
            None,
        )

    def held_by_other_than(self, partner_id: UUID, day: date) -> CustomerClaim | None:
        return next(
            (
                claim
                for claim in self.held.values()
                if claim is not None and claim.held_by_other_than(partner_id, day)
            ),
            None,
        )

    def protecting(self, day: date) -> CustomerClaim | None:
        return next((c for c in self.held.values() if c is not None and c.protects_on(day)), None)

    def protect(self, registration: Registration) -> list[CustomerClaim]:
        """Every key, held by the registration until its protection ends."""
        assert registration.protected_until is not None
        taken = []
        for key in self.customer_keys:
            claim = self.held.get(key)
            if claim is None:
                claim = CustomerClaim(
                    customer_key=key,
                    product_line=self.product_line,
                    registration_id=registration.id,
                    partner_id=registration.partner_id,
                    protected_until=registration.protected_until,
                )
                self.held[key] = claim
            else:
                claim.take(
                    registration_id=registration.id,
                    partner_id=registration.partner_id,
                    protected_until=registration.protected_until,
                )
            taken.append(claim)
        return taken

    def extend(self, registration_id: UUID, protected_until: date) -> list[CustomerClaim]:
        extended = []
        for claim in self.held.values():
            if claim is not None and claim.registration_id == registration_id:
                claim.extend(registration_id=registration_id, protected_until=protected_until)
                extended.append(claim)
        return extended

    def release(self, registration_id: UUID, reason: str) -> list[CustomerClaim]:
        return [
            claim
            for claim in self.held.values()
            if claim is not None and claim.release(registration_id=registration_id, reason=reason)
        ]
