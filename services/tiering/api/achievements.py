"""What partners achieve, recorded by channel managers: training, certifications, projects,
integrations, joint customers and managed revenue. Each answer is the partner's new standing,
so a promotion the record brings shows at once."""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import Field

from services.tiering.api.common import Manager, Tiering, Today
from services.tiering.api.partners import PartnerStanding, recorded
from shared.dependencies import Pool
from shared.edge import RequestModel
from shared.money import MoneyBody

achievements = APIRouter(prefix="/v1/partners/{partner_id}", tags=["achievements"])

Track = Literal["sales", "services"]


class TrainingRequest(RequestModel):
    track: Track
    level: Literal[101, 201, 301]
    completed_on: date | None = Field(default=None, description="Defaults to today")


class CertificationRequest(RequestModel):
    individual: str = Field(min_length=1, max_length=200, description="Who is certified")
    certification: str = Field(min_length=1, max_length=200)
    track: Track = "services"
    certified_on: date | None = Field(default=None, description="Defaults to today")
    expires_on: date | None = None


class ProjectRequest(RequestModel):
    project: str = Field(min_length=1, max_length=200, description="Unique per partner")
    completed_on: date | None = Field(default=None, description="Defaults to today")


class IntegrationRequest(RequestModel):
    integration: str = Field(min_length=1, max_length=200, description="Unique per partner")
    certified_on: date | None = Field(default=None, description="Defaults to today")


class JointCustomerRequest(RequestModel):
    customer: str = Field(min_length=1, max_length=300, description="Customer key or name")
    since: date | None = Field(default=None, description="Defaults to today")


class ManagedRevenueRequest(RequestModel):
    month: date = Field(description="Any day of the month reported")
    mrr: MoneyBody = Field(description="Recurring revenue under management that month")


@achievements.post("/training", response_model=PartnerStanding, summary="Training completed")
async def training(
    partner_id: UUID, body: TrainingRequest, app: Tiering, today: Today, pool: Pool, who: Manager
) -> PartnerStanding:
    return await recorded(
        app,
        partner_id,
        today,
        pool,
        lambda p: p.complete_training(
            track=body.track,
            level=body.level,
            on=body.completed_on or today,
            recorded_by=who.subject,
        ),
    )


@achievements.post(
    "/certifications", response_model=PartnerStanding, summary="An individual certified"
)
async def certification(
    partner_id: UUID,
    body: CertificationRequest,
    app: Tiering,
    today: Today,
    pool: Pool,
    who: Manager,
) -> PartnerStanding:
    return await recorded(
        app,
        partner_id,
        today,
        pool,
        lambda p: p.certify(
            individual=body.individual,
            certification=body.certification,
            track=body.track,
            certified_on=body.certified_on or today,
            expires_on=body.expires_on,
            recorded_by=who.subject,
        ),
    )


@achievements.post("/projects", response_model=PartnerStanding, summary="A project completed")
async def project(
    partner_id: UUID, body: ProjectRequest, app: Tiering, today: Today, pool: Pool, who: Manager
) -> PartnerStanding:
    return await recorded(
        app,
        partner_id,
        today,
        pool,
        lambda p: p.complete_project(
            project=body.project, completed_on=body.completed_on or today, recorded_by=who.subject
        ),
    )


@achievements.post(
    "/integrations", response_model=PartnerStanding, summary="An integration certified"
)
async def integration(
    partner_id: UUID,
    body: IntegrationRequest,
    app: Tiering,
    today: Today,
    pool: Pool,
    who: Manager,
) -> PartnerStanding:
    return await recorded(
        app,
        partner_id,
        today,
        pool,
        lambda p: p.certify_integration(
            integration=body.integration, on=body.certified_on or today, recorded_by=who.subject
        ),
    )


@achievements.post(
    "/joint-customers", response_model=PartnerStanding, summary="A joint customer recorded"
)
async def joint_customer(
    partner_id: UUID,
    body: JointCustomerRequest,
    app: Tiering,
    today: Today,
    pool: Pool,
    who: Manager,
) -> PartnerStanding:
    return await recorded(
        app,
        partner_id,
        today,
        pool,
        lambda p: p.record_joint_customer(
            customer=body.customer, since=body.since or today, recorded_by=who.subject
        ),
    )


@achievements.post(
    "/managed-revenue", response_model=PartnerStanding, summary="Managed revenue of a month"
)
async def managed_revenue(
    partner_id: UUID,
    body: ManagedRevenueRequest,
    app: Tiering,
    today: Today,
    pool: Pool,
    who: Manager,
) -> PartnerStanding:
    return await recorded(
        app,
        partner_id,
        today,
        pool,
        lambda p: p.report_managed_revenue(
            month=body.month, mrr=body.mrr.to_money(), recorded_by=who.subject
        ),
    )
