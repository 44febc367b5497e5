"""The commission rates in force, as the program's policy (adopted at tiering) sets them."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter
from pydantic import BaseModel

from services.commissions.api.common import Commissions, Now, Reader
from shared.policy import CommissionPolicy
from shared.program_dates import ProgramDate

rates = APIRouter(prefix="/v1/rates", tags=["rates"])


class RatesInForce(BaseModel):
    on: date
    policy_version: int
    effective_on: date
    rates: CommissionPolicy


@rates.get("", response_model=RatesInForce, summary="Commission rates in force on a day")
def rates_in_force(
    app: Commissions, _: Reader, now: Now, on: ProgramDate | None = None
) -> RatesInForce:
    day = on or now.date()
    version = app.rate_card().policies.version_on(day)
    return RatesInForce(
        on=day,
        policy_version=version.version,
        effective_on=version.effective_on,
        rates=version.policy.commissions,
    )
