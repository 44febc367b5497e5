"""The one bootstrap of the commissions service: settings in, a running service out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from services.commissions.api import routers
from services.commissions.api.whatif import TIER_CHANGES_BODY_LIMIT
from services.commissions.application import (
    FOLLOWS_REGISTRATION,
    FOLLOWS_TIERING,
    CommissionsApplication,
    MonthlyRun,
)
from services.commissions.projections import LedgerView, TiersView
from shared.audit.index import audit_trail
from shared.clock import ServiceClock, utc_now
from shared.contracts import TierChanged
from shared.database import open_database
from shared.runtime import ServiceRuntime, own_log, published_log
from shared.settings import ServiceSettings
from shared.subscriptions import DecidingTarget, Follower
from shared.web import create_service_api
from shared.webhooks.plumbing import webhook_delivery

NAME = "commissions"


def tiers_known(follows_tiering: Follower) -> None:
    """Before a contract is decided, what tiering has decided so far is taken in (a count when
    there is nothing new; a wait for the follower when there is)."""
    if follows_tiering.pending():
        follows_tiering.sync(timeout=30)


def build_runtime(
    settings: ServiceSettings | None = None, *, now: Callable[[], datetime] = utc_now
) -> ServiceRuntime:
    settings = settings or ServiceSettings()
    database = open_database(settings, NAME)
    tier_view = TiersView.open(database)
    ledger = LedgerView.open(database)
    tiering_decisions = published_log(database, "tiering", FOLLOWS_TIERING)
    follows_tiering: list[Follower] = []
    app = CommissionsApplication(
        database,
        schedule=ledger,
        tiers_known=lambda: tiers_known(follows_tiering[0]),
    )
    follows_tiering.append(Follower(tiering_decisions, DecidingTarget(app), database))
    registration = published_log(database, "registration", FOLLOWS_REGISTRATION)
    tiering_tiers = published_log(
        database, "tiering", [TierChanged], recorder=tiering_decisions.recorder
    )
    follows_registration = Follower(registration, DecidingTarget(app), database)
    follows_ledger = Follower(own_log(app, LedgerView), ledger, database)
    webhooks = webhook_delivery(
        NAME,
        database,
        settings,
        own_log=app.recorder,  # type: ignore[arg-type]
        registration_log=registration.recorder,
        save=app.save,
    )
    audit = audit_trail(NAME, app, settings, database)
    return ServiceRuntime(
        name=NAME,
        settings=settings,
        database=database,
        app=app,
        followers=[
            follows_registration,
            *follows_tiering,
            Follower(tiering_tiers, tier_view, database),
            follows_ledger,
            *webhooks.followers,
            audit.follower,
        ],
        clock=ServiceClock(
            app,
            NAME,
            jobs=[MonthlyRun(app), audit.checkpoint],
            needs=[*follows_tiering, follows_registration, follows_ledger],
            now=now,
        ),
        dispatcher=webhooks.dispatcher,
    )


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_api(
        build_runtime(settings),
        routers,
        title="dealreg commissions",
        description="What partners earn on the contracts they win, line by line, explained.",
        body_ceiling=TIER_CHANGES_BODY_LIMIT,  # the largest body a route takes
    )
