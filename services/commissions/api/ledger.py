"""The ledger: every commission line, across statements, filtered the way finance asks."""

from __future__ import annotations

from typing import Annotated, Literal, get_args
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.commissions.api.common import (
    LINE_COLUMNS,
    LineView,
    PeriodQuery,
    Reader,
    line_view,
    own_partner,
)
from services.commissions.domain.rules import RULES
from shared.dependencies import Pool
from shared.paging import Cursor, decode_cursor, encode_cursor

ledger = APIRouter(prefix="/v1/ledger", tags=["ledger"])

RuleName = Literal[
    "resale_margin",
    "poaching_cap",
    "new_business_bonus",
    "referral_fee",
    "premium_associate",
    "clawback",
    "cancellation_adjustment",
]
"""The rules a line is earned by, as the ledger filters on them."""
if set(get_args(RuleName)) != set(RULES):  # a rule added in the domain names itself here too
    raise ImportError(f"the ledger's rule names differ from the rules: {sorted(RULES)}")


class LedgerPage(BaseModel):
    lines: list[LineView]
    next_cursor: str | None


@ledger.get("", response_model=LedgerPage, summary="Commission lines, by statement month")
async def list_lines(
    pool: Pool,
    principal: Reader,
    partner_id: UUID | None = None,
    contract_id: UUID | None = None,
    customer_key: str | None = None,
    rule: Annotated[RuleName | None, Query(description="Only the lines of this rule")] = None,
    period_from: PeriodQuery = None,
    period_to: PeriodQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> LedgerPage:
    partner_id = own_partner(principal, partner_id)
    after = decode_cursor(cursor, str, str, int)
    after_seq = after[2] if after else None
    rows = await pool.fetch(
        f"SELECT {LINE_COLUMNS}, statement_id, seq FROM commissions_lines"  # noqa: S608 (constant columns; values bound)
        " WHERE ($1::uuid IS NULL OR partner_id = $1) AND ($2::uuid IS NULL OR contract_id = $2)"
        " AND ($3::text IS NULL OR customer_key = $3) AND ($4::text IS NULL OR rule = $4)"
        " AND ($5::text IS NULL OR period >= $5) AND ($6::text IS NULL OR period <= $6)"
        " AND ($7::text IS NULL OR (period, statement_id::text, seq) > ($7, $8, $9))"
        " ORDER BY period, statement_id::text, seq LIMIT $10",
        partner_id,
        contract_id,
        customer_key,
        rule,
        period_from,
        period_to,
        after[0] if after else None,
        after[1] if after else None,
        after_seq,
        limit + 1,
    )
    page = rows[:limit]
    last = page[-1] if page else None
    next_cursor = (
        encode_cursor(last["period"], last["statement_id"], last["seq"])
        if last is not None and len(rows) > limit
        else None
    )
    return LedgerPage(lines=[line_view(row) for row in page], next_cursor=next_cursor)
