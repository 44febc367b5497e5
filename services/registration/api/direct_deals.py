"""The vendor's own direct-sales deals (rule 8: a partner's protection stands)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.registration.api.common import App, CustomerBody, Today, rule_problem
from services.registration.application import NewDirectDeal
from services.registration.domain.direct import DirectDeal
from services.registration.domain.engagement import RegistrationRuleError
from shared.auth import Allow, Principal, Role
from shared.edge import RequestModel
from shared.problems import Problem

direct_deals = APIRouter(prefix="/v1/direct-deals", tags=["direct deals"])

Vendor = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.CRM))]


class DirectDealRequest(RequestModel):
    customer: CustomerBody
    product_line: str = Field(min_length=1, max_length=100)
    owner: str = Field(min_length=1, max_length=200, description="The vendor's sales rep or team")
    external_id: str | None = Field(default=None, min_length=1, max_length=200)


class DirectDealView(BaseModel):
    direct_deal_id: UUID
    customer_key: str
    customer_name: str
    product_line: str
    owner: str
    external_id: str | None
    status: str
    conflicts_with_registration: UUID | None
    protected_partner_id: UUID | None

    @classmethod
    def of(cls, deal: DirectDeal) -> DirectDealView:
        return cls(
            direct_deal_id=deal.id,
            customer_key=deal.customer_key,
            customer_name=deal.customer_name,
            product_line=deal.product_line,
            owner=deal.owner,
            external_id=deal.external_id,
            status=deal.status,
            conflicts_with_registration=deal.conflicts_with_registration,
            protected_partner_id=deal.protected_partner_id,
        )


@direct_deals.post(
    "",
    status_code=201,
    response_model=DirectDealView,
    summary="Record a direct-sales deal; a protected customer is a channel conflict",
)
async def record(body: DirectDealRequest, app: App, today: Today, _: Vendor) -> DirectDealView:
    new = NewDirectDeal(
        customer=body.customer.to_customer(),
        product_line=body.product_line,
        owner=body.owner,
        external_id=body.external_id,
    )
    try:
        deal = await run_in_threadpool(app.record_direct_deal, new, today)
    except RegistrationRuleError as error:
        raise rule_problem(error) from error
    return DirectDealView.of(deal)


@direct_deals.get("/{direct_deal_id}", response_model=DirectDealView, summary="A direct deal")
async def get_direct_deal(direct_deal_id: UUID, app: App, _: Vendor) -> DirectDealView:
    try:
        return DirectDealView.of(await run_in_threadpool(app.direct_deal, direct_deal_id))
    except AggregateNotFoundError as error:
        raise Problem(404, "direct-deal-not-found", f"No direct deal {direct_deal_id}.") from error
