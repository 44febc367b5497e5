"""What the tiering routers share: the application, roles and motion names."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import Depends

from services.tiering.application import TieringApplication
from shared.auth import Allow, Principal, Role
from shared.dependencies import Runtime

Motion = Literal["sell", "manage", "service", "build"]
AnyMotion = Literal["sell", "refer", "manage", "service", "build"]


def tiering(runtime: Runtime) -> TieringApplication:
    assert isinstance(runtime.app, TieringApplication)
    return runtime.app


def today(runtime: Runtime) -> date:
    return runtime.clock.time().date()


Tiering = Annotated[TieringApplication, Depends(tiering)]
Today = Annotated[date, Depends(today)]
Manager = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER))]
Admin = Annotated[Principal, Depends(Allow(Role.ADMIN))]
Staff = Annotated[
    Principal,
    Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.FINANCE, Role.AUDITOR)),
]
Reader = Annotated[
    Principal,
    Depends(
        Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.FINANCE, Role.AUDITOR, Role.CRM, Role.PARTNER)
    ),
]
