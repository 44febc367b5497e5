"""A partner's account with commissions: rates locked per customer, referrals, the premium
associate election; and the tiers commissions pays by."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from services.commissions.api.common import Commissions, Now, Reader, own_partner
from services.commissions.domain.partners import Account, ElectionError
from shared.auth import Allow, Principal, Role
from shared.dependencies import Pool
from shared.problems import Problem

partners = APIRouter(prefix="/v1/partners", tags=["partners"])

Elector = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.PARTNER))]


class LockedRate(BaseModel):
    customer_key: str
    rate: Decimal
    tier: str
    contract_id: UUID
    locked_on: date


class ElectionView(BaseModel):
    elected_at: datetime
    by: str


class AccountView(BaseModel):
    partner_id: UUID
    locked_rates: list[LockedRate]
    won_referrals_in_window: int
    premium_associate: ElectionView | None


def _account_view(app: Commissions, account: Account, now: datetime) -> AccountView:
    terms = app.rate_card().policy_on(now.date()).commissions.premium_associate
    election = account.elected_at(now)
    return AccountView(
        partner_id=account.partner_id,
        locked_rates=[
            LockedRate(
                customer_key=key,
                rate=lock.rate,
                tier=lock.tier,
                contract_id=lock.contract_id,
                locked_on=lock.locked_on,
            )
            for key, lock in sorted(account.locks.items())
        ],
        won_referrals_in_window=account.won_referrals_within(now.date(), terms.window_days),
        premium_associate=ElectionView(elected_at=election.elected_at, by=election.by)
        if election
        else None,
    )


@partners.get(
    "/{partner_id}/account", response_model=AccountView, summary="Locked rates and elections"
)
def get_account(partner_id: UUID, app: Commissions, principal: Reader, now: Now) -> AccountView:
    own_partner(principal, partner_id)
    account = app.account(partner_id)
    if account is None:
        raise Problem(
            404, "partner-not-found", f"Partner {partner_id} has no contract with commissions yet."
        )
    return _account_view(app, account, now)


async def _elected(
    change: Callable[..., Account],
    partner_id: UUID,
    app: Commissions,
    principal: Principal,
    now: datetime,
) -> AccountView:
    if principal.role is Role.PARTNER and principal.partner_id != partner_id:
        raise Problem(403, "other-partner", "A partner makes its own election only.")
    try:
        account = await run_in_threadpool(change, partner_id, at=now, by=principal.subject)
    except ElectionError as error:
        raise Problem(409, "election-refused", str(error)) from error
    return _account_view(app, account, now)


@partners.post(
    "/{partner_id}/premium-associate",
    response_model=AccountView,
    status_code=201,
    summary="Elect premium associate: 3% of MRR monthly instead of the referral fee",
)
async def elect_premium_associate(
    partner_id: UUID, app: Commissions, principal: Elector, now: Now
) -> AccountView:
    return await _elected(app.elect_premium_associate, partner_id, app, principal, now)


@partners.delete(
    "/{partner_id}/premium-associate",
    response_model=AccountView,
    summary="Withdraw the election: referrals won from now on earn the referral fee",
)
async def withdraw_premium_associate(
    partner_id: UUID, app: Commissions, principal: Elector, now: Now
) -> AccountView:
    return await _elected(app.withdraw_premium_associate, partner_id, app, principal, now)


class PartnerTier(BaseModel):
    motion: str
    tier: str
    effective_on: date


class PartnerTiers(BaseModel):
    partner_id: UUID
    tiers: list[PartnerTier]


partner_tiers = APIRouter(prefix="/v1/partner-tiers", tags=["partner tiers"])


@partner_tiers.get("/{partner_id}", response_model=PartnerTiers, summary="Tiers as tiering sets")
async def get_partner_tiers(partner_id: UUID, pool: Pool, principal: Reader) -> PartnerTiers:
    own_partner(principal, partner_id)
    rows = await pool.fetch(
        "SELECT motion, tier, effective_on FROM commissions_partner_tiers"
        " WHERE partner_id = $1 ORDER BY motion",
        partner_id,
    )
    if not rows:
        raise Problem(404, "partner-not-found", f"No tiers known for partner {partner_id}.")
    return PartnerTiers(partner_id=partner_id, tiers=[PartnerTier(**dict(r)) for r in rows])
