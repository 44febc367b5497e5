"""What the commissions routers share: the application, roles, scoping and amounts."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Query
from pydantic import BaseModel

from services.commissions.application import CommissionsApplication
from shared.auth import Allow, Principal, Role
from shared.dependencies import Runtime
from shared.money import Amount
from shared.problems import Problem

PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


def commissions(runtime: Runtime) -> CommissionsApplication:
    assert isinstance(runtime.app, CommissionsApplication)
    return runtime.app


def now(runtime: Runtime) -> datetime:
    return runtime.clock.time()


Commissions = Annotated[CommissionsApplication, Depends(commissions)]
Now = Annotated[datetime, Depends(now)]
Reader = Annotated[
    Principal,
    Depends(Allow(Role.ADMIN, Role.FINANCE, Role.AUDITOR, Role.CHANNEL_MANAGER, Role.PARTNER)),
]
Finance = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.FINANCE, Role.AUDITOR))]
PeriodQuery = Annotated[
    str | None, Query(pattern=PERIOD_PATTERN, description="A month, YYYY-MM", examples=["2027-01"])
]


def own_partner(principal: Principal, partner_id: UUID | None) -> UUID | None:
    """The partner a request may read: a partner token, its own only."""
    if principal.role is Role.PARTNER:
        if partner_id not in (None, principal.partner_id):
            raise Problem(403, "other-partner", "A partner sees its own commissions only.")
        return principal.partner_id
    return partner_id


def amounts(value: Any) -> list[Amount]:
    """Per-currency amounts kept as JSON (``{"USD": "100.00"}``), as a list sorted by currency."""
    data = json.loads(value) if isinstance(value, str) else (value or {})
    return [Amount(amount=Decimal(a), currency=c) for c, a in sorted(data.items())]


class LineView(BaseModel):
    line_id: UUID
    statement_period: str
    earned_in: str
    rule: str
    rate: Decimal
    base: Amount
    amount: Amount
    contract_id: UUID
    customer_key: str
    explanation: str
    caused_by: list[str]
    corrects: UUID | None
    partner_id: UUID


LINE_COLUMNS = (
    "line_id, period, earned_in, rule, rate, base_amount, amount, currency, contract_id,"
    " customer_key, explanation, caused_by, corrects, partner_id"
)


def line_view(row: Any) -> LineView:
    return LineView(
        line_id=row["line_id"],
        statement_period=row["period"],
        earned_in=row["earned_in"],
        rule=row["rule"],
        rate=row["rate"],
        base=Amount(amount=row["base_amount"], currency=row["currency"]),
        amount=Amount(amount=row["amount"], currency=row["currency"]),
        contract_id=row["contract_id"],
        customer_key=row["customer_key"],
        explanation=row["explanation"],
        caused_by=json.loads(row["caused_by"]),
        corrects=row["corrects"],
        partner_id=row["partner_id"],
    )
