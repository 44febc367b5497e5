"""The one bootstrap of the commissions service: settings in, a running service out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from fastapi import FastAPI
from pydantic import Field

from services.commissions.api import lines, tiers
from services.commissions.application import CommissionsApplication
from services.commissions.projections import LinesView, TiersView
from shared.clock import ServiceClock, utc_now
from shared.contracts import ContractSigned, TierChanged
from shared.runtime import ServiceRuntime, open_database, own_log, published_log
from shared.settings import ServiceSettings
from shared.subscriptions import DecidingTarget, Follower
from shared.web import create_service_api

NAME = "commissions"


class CommissionsSettings(ServiceSettings):
    commissions_flat_rate: Decimal = Field(
        default=Decimal("0.10"),
        ge=0,
        le=1,
        description="Rate of the first month's recurring revenue paid on a contract won.",
    )


def build_runtime(
    settings: CommissionsSettings | None = None, *, now: Callable[[], datetime] = utc_now
) -> ServiceRuntime:
    settings = settings or CommissionsSettings()
    database = open_database(settings)
    url, schema = database.url, database.schema
    app = CommissionsApplication(url, flat_rate=settings.commissions_flat_rate, schema=schema)
    tier_view = TiersView.open(url, schema=schema)
    line_view = LinesView.open(url, schema=schema)
    registration = published_log(url, "registration", [ContractSigned], schema=schema)
    tiering = published_log(url, "tiering", [TierChanged], schema=schema)
    return ServiceRuntime(
        name=NAME,
        settings=settings,
        database_url=url,
        app=app,
        followers=[
            Follower(registration, DecidingTarget(app), url),
            Follower(tiering, tier_view, url),
            Follower(own_log(app, LinesView), line_view, url),
        ],
        clock=ServiceClock(app, NAME, jobs=[], now=now),
        embedded_server=database.embedded_server,
        closers=[
            tier_view.close,
            line_view.close,
            registration.recorder.datastore.close,
            tiering.recorder.datastore.close,
        ],
    )


def create_app(settings: CommissionsSettings | None = None) -> FastAPI:
    return create_service_api(
        build_runtime(settings),
        [lines, tiers],
        title="dealreg commissions",
        description="What partners earn on the contracts they win, line by line, explained.",
    )
