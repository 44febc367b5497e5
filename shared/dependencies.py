"""What the routers of every service ask for: the running service, the database pool, and the
roles that read the log or administer it."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from shared.auth import Allow, Principal, Role
from shared.runtime import ServiceRuntime


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
Auditor = Annotated[Principal, Depends(Allow(Role.AUDITOR, Role.ADMIN))]
Admin = Annotated[Principal, Depends(Allow(Role.ADMIN))]
