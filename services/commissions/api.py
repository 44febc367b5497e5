"""Commissions' HTTP API: one router per resource."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from shared.auth import Allow, Principal, Role
from shared.money import MoneyBody
from shared.paging import decode_cursor, encode_cursor
from shared.problems import Problem
from shared.web import Pool

Reader = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.FINANCE, Role.AUDITOR, Role.PARTNER))]


def _own_partner(principal: Principal, partner_id: UUID | None) -> UUID | None:
    if principal.role is Role.PARTNER:
        if partner_id not in (None, principal.partner_id):
            raise Problem(403, "other-partner", "A partner sees its own commissions only.")
        return principal.partner_id
    return partner_id


class CommissionLineView(BaseModel):
    line_id: UUID
    partner_id: UUID
    contract_id: UUID
    customer_key: str
    period: str
    rule: str
    rate: Decimal
    base: MoneyBody
    amount: MoneyBody
    caused_by: list[str]


class LinePage(BaseModel):
    lines: list[CommissionLineView]
    next_cursor: str | None


lines = APIRouter(prefix="/v1/lines", tags=["lines"])


@lines.get("", response_model=LinePage, summary="Commission lines, oldest first")
async def list_lines(
    pool: Pool,
    principal: Reader,
    partner_id: UUID | None = None,
    contract_id: UUID | None = None,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> LinePage:
    partner_id = _own_partner(principal, partner_id)
    after = decode_cursor(cursor, 1)
    try:
        after_id = UUID(after[0]) if after else None
    except ValueError as error:
        raise Problem(400, "bad-cursor", "The cursor is not one this API handed out.") from error
    rows = await pool.fetch(
        "SELECT line_id, partner_id, contract_id, customer_key, period, rule, rate,"
        " base_amount, amount, currency, caused_by FROM commissions_lines"
        " WHERE ($1::uuid IS NULL OR partner_id = $1) AND ($2::uuid IS NULL OR contract_id = $2)"
        " AND ($3::text IS NULL OR period = $3) AND ($4::uuid IS NULL OR line_id > $4)"
        " ORDER BY line_id LIMIT $5",
        partner_id,
        contract_id,
        period,
        after_id,
        limit + 1,
    )
    page = [
        CommissionLineView(
            line_id=row["line_id"],
            partner_id=row["partner_id"],
            contract_id=row["contract_id"],
            customer_key=row["customer_key"],
            period=row["period"],
            rule=row["rule"],
            rate=row["rate"],
            base=MoneyBody(amount=row["base_amount"], currency=row["currency"]),
            amount=MoneyBody(amount=row["amount"], currency=row["currency"]),
            caused_by=json.loads(row["caused_by"]),
        )
        for row in rows[:limit]
    ]
    next_cursor = encode_cursor(page[-1].line_id) if len(rows) > limit else None
    return LinePage(lines=page, next_cursor=next_cursor)


class PartnerTier(BaseModel):
    motion: str
    tier: str
    effective_on: date


class PartnerTiers(BaseModel):
    partner_id: UUID
    tiers: list[PartnerTier]


tiers = APIRouter(prefix="/v1/partner-tiers", tags=["partner tiers"])


@tiers.get("/{partner_id}", response_model=PartnerTiers, summary="Tiers commissions pays by")
async def partner_tiers(partner_id: UUID, pool: Pool, principal: Reader) -> PartnerTiers:
    _own_partner(principal, partner_id)
    rows = await pool.fetch(
        "SELECT motion, tier, effective_on FROM commissions_partner_tiers"
        " WHERE partner_id = $1 ORDER BY motion",
        partner_id,
    )
    if not rows:
        raise Problem(404, "partner-not-found", f"No tiers known for partner {partner_id}.")
    return PartnerTiers(partner_id=partner_id, tiers=[PartnerTier(**dict(r)) for r in rows])
