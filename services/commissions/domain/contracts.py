"""A contract as commissions sees it: how it earns each month of its terms (the rule and the
rate fixed when it was signed), what it has paid, and when it ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from uuid import UUID

from dateutil.relativedelta import relativedelta
from eventsourcing.domain import Aggregate, event

from shared.money import Money


@dataclass(frozen=True)
class Term:
    start: date
    months: int
    mrr: Money
    caused_by: str

    def month_starts(self) -> list[date]:
        return [self.start + relativedelta(months=i) for i in range(self.months)]


@dataclass(frozen=True)
class Earning:
    """How a contract earns every month of its terms."""

    rule: str
    rate: Decimal
    explanation: str
    caused_by: tuple[str, ...]


@dataclass(frozen=True)
class Paid:
    """A line this contract caused, kept so that a clawback or a correction can reverse it."""

    line_id: UUID
    rule: str
    rate: Decimal
    base: Money
    amount: Money
    earned_in: str
    month_start: date | None


class Contract(Aggregate):
    """Under the contract's own id (registration's), for contracts through a partner."""

    @staticmethod
    def create_id(contract_id: UUID) -> UUID:
        return contract_id

    @event("Opened")
    def __init__(
        self,
        contract_id: UUID,
        partner_id: UUID,
        customer_key: str,
        motion: str,
        start_date: date,
        term_months: int,
        mrr: Money,
        caused_by: str,
        earning: dict[str, object] | None,
        next_due: date | None,
    ) -> None:
        self.partner_id = partner_id
        self.customer_key = customer_key
        self.motion = motion
        self.start_date = start_date
        self.terms = [Term(start_date, term_months, mrr, caused_by)]
        self.earning = _earning(earning)
        self.paid: dict[UUID, Paid] = {}
        self.accrued: set[date] = set()
        self.reversed: set[UUID] = set()
        self.cancelled_on: date | None = None

    @classmethod
    def open(
        cls,
        *,
        contract_id: UUID,
        partner_id: UUID,
        customer_key: str,
        motion: str,
        start_date: date,
        term_months: int,
        mrr: Money,
        caused_by: str,
        earning: Earning | None,
    ) -> Contract:
        return cls(
            contract_id=contract_id,
            partner_id=partner_id,
            customer_key=customer_key,
            motion=motion,
            start_date=start_date,
            term_months=term_months,
            mrr=mrr,
            caused_by=caused_by,
            earning=None
            if earning is None
            else {
                "rule": earning.rule,
                "rate": earning.rate,
                "explanation": earning.explanation,
                "caused_by": list(earning.caused_by),
            },
            next_due=start_date if earning is not None else None,
        )

    # --- the months it earns ----------------------------------------------------------
    def months(self, terms: list[Term] | None = None) -> list[tuple[date, Term]]:
        """Every month of every term that runs (a cancellation ends them)."""
        return [
            (start, term)
            for term in (self.terms if terms is None else terms)
            for start in term.month_starts()
            if self.cancelled_on is None or start < self.cancelled_on
        ]

    def due_months(self, on: date) -> list[tuple[date, Term]]:
        """Months begun by a day that have not earned yet."""
        if self.earning is None:
            return []
        return [(s, t) for s, t in self.months() if s <= on and s not in self.accrued]

    def next_due(
        self, accrued: set[date] | None = None, terms: list[Term] | None = None
    ) -> date | None:
        if self.earning is None:
            return None
        done = self.accrued if accrued is None else accrued
        pending = [start for start, _ in self.months(terms) if start not in done]
        return min(pending) if pending else None

    def record_paid(self, paid: Paid) -> None:
        """A line this contract caused: a month's accrual, or a one-time fee or bonus."""
        if paid.line_id in self.paid:
            return
        accrued = self.accrued | {paid.month_start} if paid.month_start else self.accrued
        self.line_paid(
            line_id=paid.line_id,
            rule=paid.rule,
            rate=paid.rate,
            base=paid.base,
            amount=paid.amount,
            earned_in=paid.earned_in,
            month_start=paid.month_start,
            next_due=self.next_due(accrued),
        )

    @event("LinePaid")
    def line_paid(
        self,
        line_id: UUID,
        rule: str,
        rate: Decimal,
        base: Money,
        amount: Money,
        earned_in: str,
        month_start: date | None,
        next_due: date | None,
    ) -> None:
        self.paid[line_id] = Paid(line_id, rule, rate, base, amount, earned_in, month_start)
        if month_start is not None:
            self.accrued.add(month_start)

    def one_time_lines(self) -> list[Paid]:
        return [p for p in self.paid.values() if p.month_start is None and p.amount.amount > 0]

    def accruals_from(self, day: date) -> list[Paid]:
        """Months already paid that begin on or after a day (a cancellation dated back)."""
        return [
            p
            for p in self.paid.values()
            if p.month_start is not None and p.month_start >= day and p.amount.amount > 0
        ]

    def reverse(self, original: UUID, by: UUID) -> None:
        if original not in self.reversed:
            self.line_reversed(original=original, by=by)

    @event("LineReversed")
    def line_reversed(self, original: UUID, by: UUID) -> None:
        self.reversed.add(original)

    # --- renewals and cancellation ----------------------------------------------------
    def renew(self, *, start_date: date, term_months: int, mrr: Money, caused_by: str) -> bool:
        if self.cancelled_on is not None or any(t.start == start_date for t in self.terms):
            return False
        term = Term(start_date, term_months, mrr, caused_by)
        self.renewed(
            start_date=start_date,
            term_months=term_months,
            mrr=mrr,
            caused_by=caused_by,
            next_due=self.next_due(terms=[*self.terms, term]),
        )
        return True

    @event("Renewed")
    def renewed(
        self, start_date: date, term_months: int, mrr: Money, caused_by: str, next_due: date | None
    ) -> None:
        self.terms.append(Term(start_date, term_months, mrr, caused_by))

    def cancel(self, *, effective_on: date, caused_by: str) -> bool:
        if self.cancelled_on is not None:
            return False
        pending = [s for s, _ in self.months() if s < effective_on and s not in self.accrued]
        self.cancelled(
            effective_on=effective_on,
            caused_by=caused_by,
            next_due=min(pending) if pending and self.earning else None,
        )
        return True

    @event("Cancelled")
    def cancelled(self, effective_on: date, caused_by: str, next_due: date | None) -> None:
        self.cancelled_on = effective_on


def _earning(data: dict[str, object] | None) -> Earning | None:
    if data is None:
        return None
    return Earning(
        rule=str(data["rule"]),
        rate=Decimal(str(data["rate"])),
        explanation=str(data["explanation"]),
        caused_by=tuple(str(c) for c in data["caused_by"]),  # type: ignore[attr-defined]
    )
