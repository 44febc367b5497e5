"""Partners: enrolment, standing, the member list."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from services.tiering.api.common import (
    Manager,
    Motion,
    Reader,
    Tiering,
    Today,
)
from services.tiering.application import TieringApplication
from services.tiering.domain.partners import (
    CATEGORIES_BY_FUNCTION,
    MANAGEMENT_STRUCTURES,
    MembershipConflictError,
    MembershipError,
    Partner,
)
from shared.audit.api import AsOf
from shared.auth import Allow, Principal, Role
from shared.dependencies import Pool, Runtime
from shared.edge import RequestModel
from shared.money import Amount
from shared.problems import Problem
from shared.program_dates import ProgramDate

ALL_CATEGORIES = frozenset().union(*CATEGORIES_BY_FUNCTION.values())
Region = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]*[0-9A-Za-z][^\x00]*$")
]
"""A region's name (EMEA, NA, APAC, DACH…): text with a letter or digit in it."""


class EnrolmentRequest(RequestModel):
    """``function`` and ``category`` go together: each function has categories of its own."""

    model_config = ConfigDict(
        json_schema_extra={  # no category of another function (a schema clients read past)
            "not": {
                "anyOf": [
                    {
                        "required": ["function", "category"],
                        "properties": {
                            "function": {"const": function},
                            "category": {"enum": [*sorted(ALL_CATEGORIES - categories)]},
                        },
                    }
                    for function, categories in sorted(CATEGORIES_BY_FUNCTION.items())
                ]
            }
        }
    )

    legal_name: str = Field(min_length=1, max_length=300)
    home_country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    regions: list[Region] = Field(min_length=1, description="Regions the partner operates in")
    motions: list[Motion] = Field(default=[], description="Addenda signed; `refer` needs none")
    function: str = Field(
        examples=["sales"], json_schema_extra={"enum": [*sorted(CATEGORIES_BY_FUNCTION)]}
    )
    category: str = Field(
        examples=["solution_reseller"],
        json_schema_extra={"enum": [*sorted(ALL_CATEGORIES)]},
    )
    management: str = Field(
        default="formal_program", json_schema_extra={"enum": [*sorted(MANAGEMENT_STRUCTURES)]}
    )
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
    unconverted: list[Amount] = Field(
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


partners = APIRouter(prefix="/v1/partners", tags=["partners"])


async def partner_standing(
    app: TieringApplication,
    partner_id: UUID,
    today: date,
    pool: Pool,
    as_of: datetime | None = None,
    present: datetime | None = None,
) -> PartnerStanding:
    """``as_of``: as recorded at that instant; ``present``: the program's present then (the
    registrations counted are those submitted by then)."""
    partner, version, standings = await run_in_threadpool(
        app.standing, partner_id, today, as_of=as_of
    )
    activity = await pool.fetchrow(
        "SELECT count(*) AS registrations, max(registered_at) AS last_registered_at"
        " FROM tiering_registrations"
        " WHERE partner_id = $1 AND ($2::timestamptz IS NULL OR registered_at <= $2)",
        partner.id,
        present if as_of is not None else None,
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
                unconverted=[Amount.of(m) for m in s.measured.unconverted],
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
    except MembershipConflictError as error:
        raise Problem(409, "membership-conflict", str(error)) from error
    return await partner_standing(app, partner.id, runtime.clock.time().date(), pool)


@partners.get("/{partner_id}", response_model=PartnerStanding, summary="A partner's standing")
async def standing(
    partner_id: UUID,
    app: Tiering,
    runtime: Runtime,
    pool: Pool,
    principal: Reader,
    on: Annotated[
        ProgramDate | None, Query(description="Measured on this day; default today")
    ] = None,
    as_of: AsOf = None,
) -> PartnerStanding:
    if not principal.may_see_partner(partner_id):
        raise Problem(404, "partner-not-found", f"No partner {partner_id}.")
    present = runtime.clock.time() if as_of is None else runtime.clock.time_at(as_of)
    try:
        return await partner_standing(app, partner_id, on or present.date(), pool, as_of, present)
    except AggregateNotFoundError as error:
        when = f" as of {as_of.isoformat()}" if as_of else ""
        raise Problem(404, "partner-not-found", f"No partner {partner_id}{when}.") from error


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


class AddendumRequest(RequestModel):
    motion: Motion
    signed_on: date | None = Field(default=None, description="Defaults to today")


class TerminationRequest(RequestModel):
    effective_on: date | None = Field(default=None, description="Defaults to today")
    reason: str = Field(min_length=1, max_length=500)


async def changed(
    app: TieringApplication, partner_id: UUID, today: date, pool: Pool, change: Callable[[], Any]
) -> PartnerStanding:
    """Make a change to a partner, and answer with its standing afterwards."""
    try:
        await run_in_threadpool(change)
    except AggregateNotFoundError as error:
        raise Problem(404, "partner-not-found", f"No partner {partner_id}.") from error
    except MembershipError as error:
        raise Problem(422, "membership-rule", str(error)) from error
    except MembershipConflictError as error:
        raise Problem(409, "membership-conflict", str(error)) from error
    return await partner_standing(app, partner_id, today, pool)


async def recorded(
    app: TieringApplication,
    partner_id: UUID,
    today: date,
    pool: Pool,
    change: Callable[[Partner], Any],
) -> PartnerStanding:
    """Record a change to a partner (with any promotion it brings); answer its standing."""

    def record() -> Partner:
        return app.record(partner_id, today, change)

    return await changed(app, partner_id, today, pool, record)


@partners.post("/{partner_id}/addenda", response_model=PartnerStanding, summary="Sign an addendum")
async def sign_addendum(
    partner_id: UUID, body: AddendumRequest, app: Tiering, today: Today, pool: Pool, _: Manager
) -> PartnerStanding:
    return await changed(
        app,
        partner_id,
        today,
        pool,
        lambda: app.sign_addendum(partner_id, body.motion, on=body.signed_on or today, today=today),
    )


@partners.post(
    "/{partner_id}/addenda/{motion}/termination",
    response_model=PartnerStanding,
    summary="Terminate an addendum",
)
async def terminate_addendum(
    partner_id: UUID,
    motion: Motion,
    body: TerminationRequest,
    app: Tiering,
    today: Today,
    pool: Pool,
    _: Manager,
) -> PartnerStanding:
    on = body.effective_on or today
    return await recorded(
        app,
        partner_id,
        today,
        pool,
        lambda p: p.terminate_addendum(motion=motion, on=on, reason=body.reason),
    )


@partners.post(
    "/{partner_id}/offboarding", response_model=PartnerStanding, summary="Offboard a partner"
)
async def offboard(
    partner_id: UUID,
    body: TerminationRequest,
    app: Tiering,
    today: Today,
    pool: Pool,
    _: Manager,
) -> PartnerStanding:
    on = body.effective_on or today
    return await recorded(
        app, partner_id, today, pool, lambda p: p.offboard(on=on, reason=body.reason)
    )


class RegionsRequest(RequestModel):
    regions: list[Region] = Field(min_length=1, description="Every region the partner operates in")
    effective_on: date | None = Field(default=None, description="Defaults to today")


@partners.put(
    "/{partner_id}/regions", response_model=PartnerStanding, summary="The regions operated in"
)
async def change_regions(
    partner_id: UUID,
    body: RegionsRequest,
    app: Tiering,
    today: Today,
    pool: Pool,
    who: Manager,
) -> PartnerStanding:
    on = body.effective_on or today
    return await recorded(
        app,
        partner_id,
        today,
        pool,
        lambda p: p.operate_in(regions=body.regions, on=on, recorded_by=who.subject),
    )
