"""The one bootstrap of the registration service: settings in, a running service out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from services.registration.api import routers
from services.registration.api.imports import IMPORT_BODY_LIMIT
from services.registration.application import (
    RegistrationApplication,
    RegistrationsAge,
    RenewalsFallDue,
)
from services.registration.projections import (
    CatchingUpDirectory,
    ContractsView,
    DealsView,
    PartnerDirectoryView,
    RegistrationIndex,
)
from shared.audit.index import audit_trail
from shared.clock import ServiceClock, utc_now
from shared.contracts import PartnerEnrolled, PartnerMembershipChanged, TierChanged
from shared.database import open_database
from shared.runtime import ServiceRuntime, own_log, published_log
from shared.settings import ServiceSettings
from shared.subscriptions import Follower
from shared.web import create_service_api
from shared.webhooks.plumbing import webhook_delivery

NAME = "registration"


def build_runtime(
    settings: ServiceSettings | None = None, *, now: Callable[[], datetime] = utc_now
) -> ServiceRuntime:
    settings = settings or ServiceSettings()
    database = open_database(settings, NAME)
    directory = PartnerDirectoryView.open(database)
    deals = DealsView.open(database)
    contracts = ContractsView.open(database)
    index = RegistrationIndex(deals, contracts)
    tiering = published_log(
        database, "tiering", [PartnerEnrolled, PartnerMembershipChanged, TierChanged]
    )
    follows_tiering = Follower(tiering, directory, database)
    app = RegistrationApplication(
        database,
        partners=CatchingUpDirectory(directory, lambda: follows_tiering.sync(timeout=5)),
        customers=index,
    )
    follows_deals = Follower(own_log(app, DealsView), deals, database)
    follows_contracts = Follower(own_log(app, ContractsView), contracts, database)
    webhooks = webhook_delivery(
        NAME,
        database,
        settings,
        own_log=app.recorder,  # type: ignore[arg-type]
        registration_log=app.recorder,  # type: ignore[arg-type]
        save=app.save,
    )
    audit = audit_trail(NAME, app, settings, database)
    return ServiceRuntime(
        name=NAME,
        settings=settings,
        database=database,
        app=app,
        followers=[
            follows_tiering,
            follows_deals,
            follows_contracts,
            *webhooks.followers,
            audit.follower,
        ],
        clock=ServiceClock(
            app,
            NAME,
            jobs=[RenewalsFallDue(app, index), RegistrationsAge(app, index), audit.checkpoint],
            needs=[follows_deals, follows_contracts],
            now=now,
        ),
        dispatcher=webhooks.dispatcher,
    )


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_api(
        build_runtime(settings),
        routers,
        title="dealreg registration",
        description=(
            "Deal registrations and the rules of engagement, the review queue, contracts and "
            "renewals, direct-sales conflicts, bulk import."
        ),
        body_ceiling=IMPORT_BODY_LIMIT,  # the largest body a route takes
    )
