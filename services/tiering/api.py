"""Tiering's HTTP API: one router per resource."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.tiering.application import TieringApplication
from services.tiering.domain.partners import MembershipError
from shared.auth import Allow, Principal, Role
from shared.money import MoneyBody
from shared.paging import decode_cursor, encode_cursor
from shared.problems import Problem
from shared.web import Pool, Runtime

Motion = Literal["sell", "manage", "service", "build"]
AnyMotion = Literal["sell", "refer", "manage", "service", "build"]


class EnrolmentRequest(BaseModel):
    legal_name: str = Field(min_length=1, max_length=300)
    home_country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    regions: list[str] = Field(min_length=1, description="Regions the partner operates in")
    motions: list[Motion] = Field(default=[], description="Addenda signed; `refer` needs none")
    function: str = Field(examples=["sales"])
    category: str = Field(examples=["solution_reseller"])
    management: str = Field(default="formal_program")
    enrolled_on: date | None = Field(default=None, description="Defaults to today")


class Shortfall(BaseModel):
    metric: str
    have: Decimal
    need: Decimal


class MotionStanding(BaseModel):
    motion: str
    tier: str = Field(description="The tier held")
    reached: str = Field(
        description="The tier today's metrics reach; below `tier` until a review demotes"
    )
    metrics: dict[str, Decimal] = Field(description="Trailing-window metrics of the motion")
    next_tier: str | None
    needs: list[list[Shortfall]] = Field(
        description="For each way of reaching the next tier, what is still short of it"
    )
    unconverted: list[MoneyBody] = Field(
        description="Amounts left out because the program has published no rate for them yet"
    )


class PartnerStanding(BaseModel):
    partner_id: UUID
    legal_name: str
    home_country: str
    regions: list[str]
    motions: list[str]
    function: str
    category: str
    management: str
    tiers: dict[str, str]
    standing: list[MotionStanding]
    policy_version: int
    as_of: date
    registrations: int
    last_registered_at: datetime | None


class PartnerSummary(BaseModel):
    partner_id: UUID
    legal_name: str
    home_country: str
    function: str
    category: str


class PartnerPage(BaseModel):
    partners: list[PartnerSummary]
    next_cursor: str | None


def tiering(runtime: Runtime) -> TieringApplication:
    assert isinstance(runtime.app, TieringApplication)
    return runtime.app


Tiering = Annotated[TieringApplication, Depends(tiering)]
Manager = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER))]
Reader = Annotated[
    Principal,
    Depends(
        Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.FINANCE, Role.AUDITOR, Role.CRM, Role.PARTNER)
    ),
]

partners = APIRouter(prefix="/v1/partners", tags=["partners"])


async def _standing(
    app: TieringApplication, partner_id: UUID, today: date, pool: Pool
) -> PartnerStanding:
    partner, version, standings = await run_in_threadpool(app.standing, partner_id, today)
    activity = await pool.fetchrow(
        "SELECT registrations, last_registered_at FROM tiering_partner_activity"
        " WHERE partner_id = $1",
        partner.id,
    )
    return PartnerStanding(
        partner_id=partner.id,
        legal_name=partner.legal_name,
        home_country=partner.home_country,
        regions=partner.regions,
        motions=partner.motions,
        function=partner.function,
        category=partner.category,
        management=partner.management,
        tiers=partner.tiers,
        standing=[
            MotionStanding(
                motion=s.assessment.motion,
                tier=s.tier,
                reached=s.assessment.tier,
                metrics=s.measured.metrics,
                next_tier=s.assessment.next_tier,
                needs=[
                    [Shortfall(metric=f.metric, have=f.have, need=f.need) for f in way]
                    for way in s.assessment.needs
                ],
                unconverted=[MoneyBody.of(m) for m in s.measured.unconverted],
            )
            for s in standings
        ],
        policy_version=version.version,
        as_of=today,
        registrations=activity["registrations"] if activity else 0,
        last_registered_at=activity["last_registered_at"] if activity else None,
    )


@partners.post("", status_code=201, response_model=PartnerStanding, summary="Enrol a partner")
async def enrol(
    body: EnrolmentRequest, app: Tiering, runtime: Runtime, pool: Pool, _: Manager
) -> PartnerStanding:
    try:
        partner = await run_in_threadpool(
            app.enrol_partner,
            legal_name=body.legal_name,
            home_country=body.home_country,
            regions=body.regions,
            motions=list(body.motions),
            function=body.function,
            category=body.category,
            management=body.management,
            on=body.enrolled_on or runtime.clock.time().date(),
        )
    except MembershipError as error:
        raise Problem(422, "membership-rule", str(error)) from error
    return await _standing(app, partner.id, runtime.clock.time().date(), pool)


@partners.get("/{partner_id}", response_model=PartnerStanding, summary="A partner's standing")
async def standing(
    partner_id: UUID,
    app: Tiering,
    runtime: Runtime,
    pool: Pool,
    principal: Reader,
    on: Annotated[date | None, Query(description="As of this day; default today")] = None,
) -> PartnerStanding:
    if not principal.may_see_partner(partner_id):
        raise Problem(404, "partner-not-found", f"No partner {partner_id}.")
    try:
        return await _standing(app, partner_id, on or runtime.clock.time().date(), pool)
    except AggregateNotFoundError as error:
        raise Problem(404, "partner-not-found", f"No partner {partner_id}.") from error


@partners.get("", response_model=PartnerPage, summary="Partners of the program")
async def list_partners(
    pool: Pool,
    _: Annotated[
        Principal, Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.FINANCE, Role.AUDITOR))
    ],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[UUID | None, Query(description="`next_cursor` of the previous page")] = None,
) -> PartnerPage:
    rows = await pool.fetch(
        "SELECT partner_id, legal_name, home_country, function, category FROM tiering_partners"
        " WHERE ($1::uuid IS NULL OR partner_id > $1) ORDER BY partner_id LIMIT $2",
        cursor,
        limit + 1,
    )
    page = [PartnerSummary(**dict(row)) for row in rows[:limit]]
    next_cursor = str(page[-1].partner_id) if len(rows) > limit else None
    return PartnerPage(partners=page, next_cursor=next_cursor)


tiers = APIRouter(prefix="/v1/tiers", tags=["tiers"])
Staff = Annotated[
    Principal,
    Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.FINANCE, Role.AUDITOR)),
]


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
    principal: Reader,
    partner_id: UUID | None = None,
    motion: AnyMotion | None = None,
    since: Annotated[date | None, Query(alias="from", description="Effective on or after")] = None,
    until: Annotated[date | None, Query(description="Effective on or before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> Movements:
    if principal.role is Role.PARTNER:
        if partner_id not in (None, principal.partner_id):
            raise Problem(403, "other-partner", "A partner sees its own movements only.")
        partner_id = principal.partner_id
    elif principal.role is Role.CRM:
        raise Problem(403, "forbidden", "Tier movements are for program staff and partners.")
    after = decode_cursor(cursor, 1)
    try:
        after_position = int(after[0]) if after else 0
    except ValueError as error:
        raise Problem(400, "bad-cursor", "The cursor is not one this API handed out.") from error
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
