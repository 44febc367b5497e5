"""Tiers across the program: distribution, movements, non-performers."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from services.tiering.api.common import (
    AnyMotion,
    Staff,
)
from shared.auth import Allow, Principal, Role
from shared.dependencies import Pool
from shared.paging import Cursor, decode_cursor, encode_cursor
from shared.problems import Problem
from shared.program_dates import ProgramDate

tiers = APIRouter(prefix="/v1/tiers", tags=["tiers"])


class TierCount(BaseModel):
    motion: str
    tier: str
    partners: int


class Distribution(BaseModel):
    distribution: list[TierCount]


@tiers.get("/distribution", response_model=Distribution, summary="Partners per tier and motion")
async def distribution(pool: Pool, _: Staff, motion: AnyMotion | None = None) -> Distribution:
    rows = await pool.fetch(
        "SELECT motion, tier, count(*) AS partners FROM tiering_partner_tiers"
        " WHERE $1::text IS NULL OR motion = $1 GROUP BY motion, tier ORDER BY motion, tier",
        motion,
    )
    return Distribution(distribution=[TierCount(**dict(row)) for row in rows])


class Movement(BaseModel):
    partner_id: UUID
    motion: str
    previous_tier: str | None
    tier: str
    effective_on: date
    reason: str
    metrics: dict[str, Decimal]


class Movements(BaseModel):
    movements: list[Movement]
    next_cursor: str | None


@tiers.get("/movements", response_model=Movements, summary="Tier changes, in the order made")
async def movements(
    pool: Pool,
    principal: Annotated[
        Principal,
        Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.FINANCE, Role.AUDITOR, Role.PARTNER)),
    ],
    partner_id: UUID | None = None,
    motion: AnyMotion | None = None,
    since: Annotated[
        ProgramDate | None, Query(alias="from", description="Effective on or after")
    ] = None,
    until: Annotated[ProgramDate | None, Query(description="Effective on or before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
) -> Movements:
    if principal.role is Role.PARTNER:
        if partner_id not in (None, principal.partner_id):
            raise Problem(403, "other-partner", "A partner sees its own movements only.")
        partner_id = principal.partner_id
    after = decode_cursor(cursor, int)
    after_position = after[0] if after else 0
    rows = await pool.fetch(
        "SELECT position, partner_id, motion, previous_tier, tier, effective_on, reason, metrics"
        " FROM tiering_tier_changes WHERE position > $1"
        " AND ($2::uuid IS NULL OR partner_id = $2) AND ($3::text IS NULL OR motion = $3)"
        " AND ($4::date IS NULL OR effective_on >= $4) AND ($5::date IS NULL OR effective_on <= $5)"
        " ORDER BY position LIMIT $6",
        after_position,
        partner_id,
        motion,
        since,
        until,
        limit + 1,
    )
    page = rows[:limit]
    return Movements(
        movements=[
            Movement(
                partner_id=row["partner_id"],
                motion=row["motion"],
                previous_tier=row["previous_tier"],
                tier=row["tier"],
                effective_on=row["effective_on"],
                reason=row["reason"],
                metrics=json.loads(row["metrics"]),
            )
            for row in page
        ],
        next_cursor=encode_cursor(page[-1]["position"]) if len(rows) > limit else None,
    )


class NonPerformer(BaseModel):
    partner_id: UUID
    legal_name: str
    flagged_at_review: date
    last_activity: date | None


class NonPerformers(BaseModel):
    non_performers: list[NonPerformer]


@tiers.get(
    "/non-performers",
    response_model=NonPerformers,
    summary="Partners flagged inactive at their last quarterly review",
)
async def non_performers(pool: Pool, _: Staff) -> NonPerformers:
    rows = await pool.fetch(
        "SELECT partner_id, legal_name, inactive_at_review AS flagged_at_review, last_activity"
        " FROM tiering_partners WHERE inactive_at_review IS NOT NULL"
        " ORDER BY inactive_at_review, legal_name"
    )
    return NonPerformers(non_performers=[NonPerformer(**dict(row)) for row in rows])
