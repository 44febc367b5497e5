"""Monthly statements: each line names its rule, rate, base and the events that caused it; a
closed month never changes, and what comes after lands in a later month, linked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from dateutil.relativedelta import relativedelta
from eventsourcing.domain import Aggregate, event

import shared.contracts as published
from shared.contracts import publishes
from shared.money import Money

_STATEMENT = uuid5(NAMESPACE_URL, "urn:dealreg:statement")
_LINE = uuid5(NAMESPACE_URL, "urn:dealreg:commission-line")
_BALANCE = uuid5(NAMESPACE_URL, "urn:dealreg:balance")
_BOOKS = uuid5(NAMESPACE_URL, "urn:dealreg:books")


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def period_start(period: str) -> date:
    year, month = period.split("-")
    return date(int(year), int(month), 1)


def next_period(period: str) -> str:
    return period_of(period_start(period) + relativedelta(months=1))


def previous_period(period: str) -> str:
    return period_of(period_start(period) - relativedelta(months=1))


def line_id(cause: str) -> UUID:
    """A line's id derives from what caused it: the same cause never pays twice."""
    return uuid5(_LINE, cause)


@dataclass(frozen=True)
class Line:
    line_id: UUID
    rule: str
    rate: Decimal
    base: Money
    amount: Money
    """``base * rate``, rounded half-even to the currency's minor unit: the one rounding."""
    contract_id: UUID
    customer_key: str
    earned_in: str
    """The month the amount belongs to; a later statement carries it when that month was closed."""
    explanation: str
    caused_by: tuple[str, ...]
    """``log#position`` of the events that caused it."""
    corrects: UUID | None = None
    """The line this one reverses or adjusts."""


class StatementClosedError(Exception):
    """A line offered to a statement already issued: it belongs to a later one."""


@publishes(Issued=published.StatementIssued)
class Statement(Aggregate):
    """What one partner earned in one month."""

    @staticmethod
    def create_id(partner_id: UUID, period: str) -> UUID:
        return uuid5(_STATEMENT, f"{partner_id}/{period}")

    @event("Opened")
    def __init__(self, partner_id: UUID, period: str) -> None:
        self.partner_id = partner_id
        self.period = period
        self.lines: list[Line] = []
        self.issued: Issue | None = None

    def enter(self, line: Line) -> None:
        if self.issued is not None:
            raise StatementClosedError(f"the statement for {self.period} is closed")
        if any(existing.line_id == line.line_id for existing in self.lines):
            return
        self.line_entered(
            line_id=line.line_id,
            rule=line.rule,
            rate=line.rate,
            base=line.base,
            amount=line.amount,
            contract_id=line.contract_id,
            customer_key=line.customer_key,
            earned_in=line.earned_in,
            explanation=line.explanation,
            caused_by=list(line.caused_by),
            corrects=line.corrects,
        )

    @event("LineEntered")
    def line_entered(
        self,
        line_id: UUID,
        rule: str,
        rate: Decimal,
        base: Money,
        amount: Money,
        contract_id: UUID,
        customer_key: str,
        earned_in: str,
        explanation: str,
        caused_by: list[str],
        corrects: UUID | None,
    ) -> None:
        self.lines.append(
            Line(
                line_id,
                rule,
                rate,
                base,
                amount,
                contract_id,
                customer_key,
                earned_in,
                explanation,
                tuple(caused_by),
                corrects,
            )
        )

    def totals(self) -> dict[str, Decimal]:
        """The sum of the lines, per currency."""
        totals: dict[str, Decimal] = {}
        for line in self.lines:
            totals[line.amount.currency] = totals.get(line.amount.currency, Decimal(0)) + (
                line.amount.amount
            )
        return totals

    def issue(self, carried_in: dict[str, Decimal]) -> Issue:
        """Close the month: what is owed per currency, after any negative balance carried in;
        what stays negative is carried to the next statement."""
        if self.issued is not None:
            return self.issued
        totals = self.totals()
        balance = {
            currency: totals.get(currency, Decimal(0)) + carried_in.get(currency, Decimal(0))
            for currency in sorted({*totals, *carried_in})
        }
        self.statement_issued(
            partner_id=self.partner_id,
            period=self.period,
            lines=len(self.lines),
            carried_in={c: a for c, a in sorted(carried_in.items()) if a},
            totals=dict(sorted(totals.items())),
            payable={c: a for c, a in balance.items() if a > 0},
            carried_out={c: a for c, a in balance.items() if a < 0},
        )
        assert self.issued is not None
        return self.issued

    @event("Issued")
    def statement_issued(
        self,
        partner_id: UUID,
        period: str,
        lines: int,
        carried_in: dict[str, Decimal],
        totals: dict[str, Decimal],
        payable: dict[str, Decimal],
        carried_out: dict[str, Decimal],
    ) -> None:
        self.issued = Issue(carried_in, totals, payable, carried_out)


@dataclass(frozen=True)
class Issue:
    carried_in: dict[str, Decimal]
    totals: dict[str, Decimal]
    payable: dict[str, Decimal]
    carried_out: dict[str, Decimal]


class Balance(Aggregate):
    """What a partner owes back (a negative balance), carried from statement to statement."""

    @staticmethod
    def create_id(partner_id: UUID) -> UUID:
        return uuid5(_BALANCE, str(partner_id))

    @event("Opened")
    def __init__(self, partner_id: UUID) -> None:
        self.partner_id = partner_id
        self.carried: dict[str, Decimal] = {}

    def carry(self, period: str, carried_out: dict[str, Decimal]) -> None:
        if carried_out != self.carried:
            self.carried_forward(period=period, carried=carried_out)

    @event("CarriedForward")
    def carried_forward(self, period: str, carried: dict[str, Decimal]) -> None:
        self.carried = dict(carried)


class Books(Aggregate):
    """The program's books: through which month every statement is closed."""

    @staticmethod
    def create_id() -> UUID:
        return _BOOKS

    @event("Opened")
    def __init__(self) -> None:
        self.closed_through: str | None = None

    def close(self, period: str) -> None:
        if self.closed_through is None or period > self.closed_through:
            self.month_closed(period=period)

    @event("MonthClosed")
    def month_closed(self, period: str) -> None:
        self.closed_through = period

    def open_period_for(self, earned_in: str) -> str:
        """The statement a line earned in a month goes to: that month's, unless it is closed."""
        if self.closed_through is None or earned_in > self.closed_through:
            return earned_in
        return next_period(self.closed_through)
