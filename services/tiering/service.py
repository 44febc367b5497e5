"""The one bootstrap of the tiering service: settings in, a running service out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from services.tiering.api import routers
from services.tiering.application import (
    FOLLOWS,
    ProgramCalendar,
    TieringApplication,
)
from services.tiering.projections import ActivityView, MemberRegister, MembersView
from shared.audit.index import audit_trail
from shared.clock import ServiceClock, utc_now
from shared.contracts import ContractRenewed, ContractSigned, DealRegistered
from shared.database import open_database
from shared.edge import REQUEST_BODY_LIMIT
from shared.runtime import ServiceRuntime, own_log, published_log
from shared.settings import ServiceSettings
from shared.subscriptions import DecidingTarget, Follower
from shared.web import create_service_api
from shared.webhooks.plumbing import webhook_delivery

NAME = "tiering"


def build_runtime(
    settings: ServiceSettings | None = None, *, now: Callable[[], datetime] = utc_now
) -> ServiceRuntime:
    settings = settings or ServiceSettings()
    database = open_database(settings, NAME)
    members = MembersView.open(database)
    activity = ActivityView.open(database)
    register = MemberRegister(members, activity)
    app = TieringApplication(database, members=register)
    registrations = published_log(
        database, "registration", [DealRegistered, ContractSigned, ContractRenewed]
    )
    registration_facts = published_log(
        database, "registration", FOLLOWS, recorder=registrations.recorder
    )
    follows_members = Follower(own_log(app, MembersView), members, database)
    follows_activity = Follower(registrations, activity, database)
    decides_on_facts = Follower(registration_facts, DecidingTarget(app), database)
    webhooks = webhook_delivery(
        NAME,
        database,
        settings,
        own_log=app.recorder,  # type: ignore[arg-type]
        registration_log=registration_facts.recorder,
        save=app.save,
    )
    audit = audit_trail(NAME, app, settings, database)
    return ServiceRuntime(
        name=NAME,
        settings=settings,
        database=database,
        app=app,
        followers=[
            follows_members,
            follows_activity,
            decides_on_facts,
            *webhooks.followers,
            audit.follower,
        ],
        clock=ServiceClock(
            app,
            NAME,
            jobs=[ProgramCalendar(app), audit.checkpoint],
            needs=[decides_on_facts, follows_activity, follows_members],
            now=now,
        ),
        dispatcher=webhooks.dispatcher,
    )


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_api(
        build_runtime(settings),
        routers,
        title="dealreg tiering",
        description="The partner program: members, what they signed and achieved, their tiers.",
        body_ceiling=REQUEST_BODY_LIMIT,  # the largest body a route takes
    )
