"""Contracts the CRM reports: signed (closed-won), renewed, cancelled; and their renewal window."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

from dateutil.relativedelta import relativedelta
from eventsourcing.domain import Aggregate, event

import shared.contracts as published
from services.registration.domain.engagement import RegistrationRuleError, TransitionError
from shared.contracts import publishes
from shared.money import Money
from shared.program_dates import LAST_DAY

RENEWAL_WINDOW = timedelta(days=90)
DEFAULT_TERM_MONTHS = 12


def contract_end(start: date, term_months: int) -> date:
    """The last day of a term: a 12-month term from 2026-01-01 ends on 2026-12-31."""
    return start + relativedelta(months=term_months) - timedelta(days=1)


@publishes(
    Signed=published.ContractSigned,
    RenewalDueRaised=published.RenewalDue,
    Renewed=published.ContractRenewed,
    Cancelled=published.ContractCancelled,
)
class Contract(Aggregate):
    class Signed(Aggregate.Created):
        customer_key: str
        partner_id: UUID | None
        registration_id: UUID | None
        motion: str | None
        start_date: date
        term_months: int
        end_date: date
        mrr: Money
        one_time: Money | None
        external_id: str | None
        poached: bool
        incumbent_partner_id: UUID | None
        reported_at: datetime

    class RenewalDueRaised(Aggregate.Event):
        customer_key: str
        partner_id: UUID | None
        end_date: date
        due_on: date

    class Renewed(Aggregate.Event):
        customer_key: str
        partner_id: UUID | None
        term_months: int
        start_date: date
        end_date: date
        mrr: Money
        external_id: str | None
        reported_at: datetime

    class Cancelled(Aggregate.Event):
        customer_key: str
        partner_id: UUID | None
        start_date: date
        effective_on: date
        reason: str
        reported_at: datetime

    @event(Signed)
    def __init__(
        self,
        customer_key: str,
        partner_id: UUID | None,
        registration_id: UUID | None,
        motion: str | None,
        start_date: date,
        term_months: int,
        end_date: date,
        mrr: Money,
        one_time: Money | None,
        external_id: str | None,
        poached: bool,
        incumbent_partner_id: UUID | None,
        reported_at: datetime,
    ) -> None:
        self.customer_key = customer_key
        self.partner_id = partner_id
        self.registration_id = registration_id
        self.motion = motion
        self.start_date = start_date
        self.term_months = term_months
        self.end_date = end_date
        self.mrr = mrr
        self.one_time = one_time
        self.external_id = external_id
        self.poached = poached
        self.incumbent_partner_id = incumbent_partner_id
        self.renewal_due_for: date | None = None
        self.cancelled_on: date | None = None
        self.renewals = 0
        self.reported_at = reported_at

    @classmethod
    def sign(
        cls,
        *,
        customer_key: str,
        partner_id: UUID | None,
        registration_id: UUID | None,
        motion: str | None,
        start_date: date,
        term_months: int,
        mrr: Money,
        one_time: Money | None,
        external_id: str | None,
        reported_at: datetime,
        incumbent_partner_id: UUID | None = None,
    ) -> Contract:
        """``reported_at``: the program's present when the CRM reports it."""
        if term_months < 1:
            raise RegistrationRuleError("a contract's term is at least one month")
        if one_time is not None and one_time.currency != mrr.currency:
            raise RegistrationRuleError("the one-time amount must be in the contract's currency")
        poached = incumbent_partner_id is not None and incumbent_partner_id != partner_id
        return cls(
            customer_key=customer_key,
            partner_id=partner_id,
            registration_id=registration_id,
            motion=motion,
            start_date=start_date,
            term_months=term_months,
            end_date=contract_end(start_date, term_months),
            mrr=mrr,
            one_time=one_time,
            external_id=external_id,
            poached=poached,
            incumbent_partner_id=incumbent_partner_id if poached else None,
            reported_at=reported_at,
        )

    @property
    def renewal_due_on(self) -> date:
        return self.end_date - RENEWAL_WINDOW

    @property
    def status(self) -> str:
        return "cancelled" if self.cancelled_on else "active"

    def is_active_on(self, day: date) -> bool:
        return self.start_date <= day <= self.end_date and (
            self.cancelled_on is None or day < self.cancelled_on
        )

    def note_time(self, today: date) -> bool:
        """Raise ``RenewalDue`` once per term, from 90 days before the end; True if raised."""
        if self.cancelled_on is not None and self.cancelled_on <= self.end_date:
            return False
        if self.renewal_due_for == self.end_date or today < self.renewal_due_on:
            return False
        self.renewal_due_raised(
            customer_key=self.customer_key,
            partner_id=self.partner_id,
            end_date=self.end_date,
            due_on=self.renewal_due_on,
        )
        return True

    @event(RenewalDueRaised)
    def renewal_due_raised(
        self, customer_key: str, partner_id: UUID | None, end_date: date, due_on: date
    ) -> None:
        self.renewal_due_for = end_date

    def renew(
        self,
        *,
        term_months: int,
        mrr: Money | None,
        external_id: str | None,
        reported_at: datetime,
    ) -> None:
        if self.cancelled_on is not None:
            raise TransitionError("a cancelled contract cannot be renewed")
        if term_months < 1:
            raise RegistrationRuleError("a renewal's term is at least one month")
        new_mrr = mrr or self.mrr
        if new_mrr.currency != self.mrr.currency:
            raise TransitionError("a renewal keeps the contract's currency")
        start = self.end_date + timedelta(days=1)
        if contract_end(start, term_months) > LAST_DAY:
            raise RegistrationRuleError(
                f"term_months: a renewal of {term_months} months would end after"
                f" {LAST_DAY.isoformat()}, the program's last day"
            )
        self.renewed(
            customer_key=self.customer_key,
            partner_id=self.partner_id,
            term_months=term_months,
            start_date=start,
            end_date=contract_end(start, term_months),
            mrr=new_mrr,
            external_id=external_id,
            reported_at=reported_at,
        )

    @event(Renewed)
    def renewed(
        self,
        customer_key: str,
        partner_id: UUID | None,
        term_months: int,
        start_date: date,
        end_date: date,
        mrr: Money,
        external_id: str | None,
        reported_at: datetime,
    ) -> None:
        self.end_date = end_date
        self.mrr = mrr
        self.renewals += 1

    def cancel(self, *, effective_on: date, reason: str, reported_at: datetime) -> None:
        if self.cancelled_on is not None:
            raise TransitionError(f"already cancelled on {self.cancelled_on.isoformat()}")
        if effective_on < self.start_date:  # a conflict with the contract as recorded: a 409
            raise TransitionError(
                f"a contract cannot end before it starts ({self.start_date.isoformat()})"
            )
        self.cancelled(
            customer_key=self.customer_key,
            partner_id=self.partner_id,
            start_date=self.start_date,
            effective_on=effective_on,
            reason=reason,
            reported_at=reported_at,
        )

    @event(Cancelled)
    def cancelled(
        self,
        customer_key: str,
        partner_id: UUID | None,
        start_date: date,
        effective_on: date,
        reason: str,
        reported_at: datetime,
    ) -> None:
        self.cancelled_on = effective_on
