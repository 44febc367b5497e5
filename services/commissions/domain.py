"""Commission lines: each names its rule, rate, base and the events that caused it."""

from __future__ import annotations

from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from shared.money import Money

_LINE_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dealreg:commission-line")

FLAT_RATE_RULE = "flat_rate"


class CommissionLine(Aggregate):
    """One amount owed to a partner. Its id derives from what caused it, so the same cause can
    never produce two lines."""

    @staticmethod
    def create_id(cause: str, **_: object) -> UUID:
        return uuid5(_LINE_NAMESPACE, cause)

    class Accrued(Aggregate.Created):
        cause: str
        partner_id: UUID
        contract_id: UUID
        customer_key: str
        period: str
        rule: str
        rate: Decimal
        base: Money
        amount: Money
        caused_by: list[str]

    @event(Accrued)
    def __init__(
        self,
        cause: str,
        partner_id: UUID,
        contract_id: UUID,
        customer_key: str,
        period: str,
        rule: str,
        rate: Decimal,
        base: Money,
        amount: Money,
        caused_by: list[str],
    ) -> None:
        self.cause = cause
        self.partner_id = partner_id
        self.contract_id = contract_id
        self.customer_key = customer_key
        self.period = period
        self.rule = rule
        self.rate = rate
        self.base = base
        self.amount = amount
        self.caused_by = caused_by


def flat_rate_line(
    *,
    partner_id: UUID,
    contract_id: UUID,
    customer_key: str,
    period: str,
    mrr: Money,
    rate: Decimal,
    caused_by: list[str],
) -> CommissionLine:
    """The walking skeleton's rule: a flat rate of the first month's recurring revenue."""
    return CommissionLine(
        cause=f"{FLAT_RATE_RULE}:{contract_id}",
        partner_id=partner_id,
        contract_id=contract_id,
        customer_key=customer_key,
        period=period,
        rule=FLAT_RATE_RULE,
        rate=rate,
        base=mrr,
        amount=mrr.times(rate).rounded(),
        caused_by=caused_by,
    )
