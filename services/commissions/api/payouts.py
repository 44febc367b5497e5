"""What the program pays out for a month, per currency."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.commissions.api.common import PERIOD_PATTERN, Finance
from shared.dependencies import Pool
from shared.money import Amount

payouts = APIRouter(prefix="/v1/payouts", tags=["payouts"])


class CurrencyPayout(BaseModel):
    currency: str
    partners_paid: int
    payable: Amount
    earned: Amount
    """The lines' total, before negative balances carried in."""
    carried_forward: Amount
    """Negative balances that move on to the partners' next statements."""


class PayoutSummary(BaseModel):
    period: str
    issued_statements: int
    open_statements: int
    """Statements of the month not yet issued: the month has not closed."""
    currencies: list[CurrencyPayout]


@payouts.get("", response_model=PayoutSummary, summary="Payout summary of a month, per currency")
async def payout_summary(
    pool: Pool,
    _: Finance,
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, examples=["2027-01"])],
) -> PayoutSummary:
    counts = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE issued) AS issued, count(*) FILTER (WHERE NOT issued)"
        " AS open FROM commissions_statements WHERE period = $1",
        period,
    )
    rows = await pool.fetch(
        "WITH amounts AS ("
        " SELECT s.partner_id, k.currency, coalesce((s.payable->>k.currency)::numeric, 0) AS paid,"
        "  coalesce((s.totals->>k.currency)::numeric, 0) AS earned,"
        "  coalesce((s.carried_out->>k.currency)::numeric, 0) AS carried"
        " FROM commissions_statements s, LATERAL ("
        "  SELECT jsonb_object_keys(s.totals || s.payable || s.carried_out || s.carried_in)"
        "  AS currency) k"
        " WHERE s.period = $1 AND s.issued)"
        " SELECT currency, count(*) FILTER (WHERE paid > 0) AS partners_paid,"
        " sum(paid) AS payable, sum(earned) AS earned, sum(carried) AS carried"
        " FROM amounts GROUP BY currency ORDER BY currency",
        period,
    )
    assert counts is not None
    return PayoutSummary(
        period=period,
        issued_statements=counts["issued"],
        open_statements=counts["open"],
        currencies=[
            CurrencyPayout(
                currency=row["currency"],
                partners_paid=row["partners_paid"],
                payable=Amount(amount=row["payable"], currency=row["currency"]),
                earned=Amount(amount=row["earned"], currency=row["currency"]),
                carried_forward=Amount(amount=row["carried"], currency=row["currency"]),
            )
            for row in rows
        ],
    )
