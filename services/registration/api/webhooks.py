"""Webhook endpoints: partner portals (and the program) subscribe to the events they want."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.registration.api.common import App, Now
from services.registration.domain.webhooks import Endpoint, EndpointError
from shared.auth import Allow, Principal, Role
from shared.contracts import WEBHOOK_EVENT_TYPES
from shared.dependencies import Runtime
from shared.edge import RequestModel
from shared.problems import Problem
from shared.webhooks.addresses import ENDPOINT_URL_PATTERN, EndpointUrlError, check_endpoint_url
from shared.webhooks.secrets import SecretBox, new_secret

webhooks = APIRouter(prefix="/v1/webhooks/endpoints", tags=["webhooks"])

Subscriber = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.PARTNER))]
Watcher = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.AUDITOR, Role.PARTNER))]


def secret_box(runtime: Runtime) -> SecretBox:
    key = runtime.settings.resolved_webhook_key()
    if key is None:
        raise Problem(
            503,
            "webhooks-not-configured",
            "Webhooks need DEALREG_WEBHOOK_KEY (or a JWT secret) to seal endpoint secrets.",
        )
    return SecretBox(key)


Box = Annotated[SecretBox, Depends(secret_box)]


EndpointUrl = Annotated[
    str,
    Field(
        max_length=2000,
        json_schema_extra={"pattern": ENDPOINT_URL_PATTERN},
        description="https, at a DNS name outside the local names (with"
        " `DEALREG_WEBHOOK_ALLOW_PRIVATE_URLS`, any http(s) URL). The name is resolved and its"
        " addresses checked at each delivery.",
        examples=["https://portal.example.com/dealreg"],
    ),
]
EventType = Annotated[str, Field(json_schema_extra={"enum": sorted(WEBHOOK_EVENT_TYPES)})]


class EndpointRequest(RequestModel):
    url: EndpointUrl
    event_types: list[EventType] = Field(min_length=1)
    partner_id: UUID | None = Field(
        default=None,
        description="Whose events (a partner token: its own, always); none: the whole program",
    )
    description: str = Field(default="", max_length=500)


class EndpointChange(RequestModel):
    url: EndpointUrl | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500)


class SecretView(BaseModel):
    valid_until: datetime | None
    """None for the secret signing from now on; a rotated-out secret signs until then."""


class EndpointView(BaseModel):
    endpoint_id: UUID
    url: str
    event_types: list[str]
    partner_id: UUID | None
    enabled: bool
    deleted: bool
    description: str
    secrets: list[SecretView]

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointView:
        return cls(
            endpoint_id=endpoint.id,
            url=endpoint.url,
            event_types=endpoint.event_types,
            partner_id=endpoint.partner_id,
            enabled=endpoint.enabled,
            deleted=endpoint.deleted,
            description=endpoint.description,
            secrets=[
                SecretView(valid_until=datetime.fromisoformat(s["until"]) if s["until"] else None)
                for s in endpoint.secrets
            ],
        )


class EndpointWithSecret(EndpointView):
    secret: str = Field(description="Shown once: keep it to verify signatures (whsec_…)")


def _checked_url(runtime: Runtime, url: str) -> str:
    try:
        check_endpoint_url(url, allow_private=runtime.settings.webhook_allow_private_urls)
    except EndpointUrlError as error:
        raise Problem(422, "endpoint-url-refused", str(error)) from error
    return url


def _visible(app: App, endpoint_id: UUID, principal: Principal) -> Endpoint:
    try:
        endpoint = app.endpoint(endpoint_id)
    except AggregateNotFoundError:
        endpoint = None
    if endpoint is None or (
        principal.role is Role.PARTNER and endpoint.partner_id != principal.partner_id
    ):
        raise Problem(404, "endpoint-not-found", f"No webhook endpoint {endpoint_id}.")
    return endpoint


@webhooks.post("", status_code=201, response_model=EndpointWithSecret, summary="Subscribe")
async def create_endpoint(
    body: EndpointRequest, app: App, runtime: Runtime, box: Box, principal: Subscriber
) -> EndpointWithSecret:
    partner_id = body.partner_id
    if principal.role is Role.PARTNER:
        if partner_id not in (None, principal.partner_id):
            raise Problem(403, "other-partner", "A partner subscribes to its own events only.")
        partner_id = principal.partner_id
    url = _checked_url(runtime, body.url)  # no lookup: the name is resolved at each delivery
    secret = new_secret()
    try:
        endpoint = await run_in_threadpool(
            app.create_endpoint,
            url=url,
            event_types=body.event_types,
            partner_id=partner_id,
            description=body.description,
            sealed_secret=box.seal(secret),
            by=principal.subject,
        )
    except EndpointError as error:
        raise Problem(422, "endpoint-refused", str(error)) from error
    return EndpointWithSecret(**EndpointView.of(endpoint).model_dump(), secret=secret)


@webhooks.get("/{endpoint_id}", response_model=EndpointView, summary="A subscription")
def get_endpoint(endpoint_id: UUID, app: App, principal: Watcher) -> EndpointView:
    return EndpointView.of(_visible(app, endpoint_id, principal))


async def _changed(
    app: App, endpoint_id: UUID, principal: Principal, change: Callable[[Endpoint], None]
) -> Endpoint:
    _visible(app, endpoint_id, principal)
    try:
        return await run_in_threadpool(app.change_endpoint, endpoint_id, change)
    except EndpointError as error:
        raise Problem(409, "endpoint-refused", str(error)) from error


@webhooks.patch("/{endpoint_id}", response_model=EndpointView, summary="Change a subscription")
async def change_endpoint(
    endpoint_id: UUID, body: EndpointChange, app: App, runtime: Runtime, principal: Subscriber
) -> EndpointView:
    url = None if body.url is None else _checked_url(runtime, body.url)
    endpoint = await _changed(
        app,
        endpoint_id,
        principal,
        lambda e: e.update(
            url=url,
            event_types=body.event_types,
            description=body.description,
            by=principal.subject,
        ),
    )
    return EndpointView.of(endpoint)


@webhooks.post(
    "/{endpoint_id}/rotation",
    response_model=EndpointWithSecret,
    summary="A new secret; the previous one keeps signing for the overlap (24 h by default)",
)
async def rotate_secret(
    endpoint_id: UUID, app: App, runtime: Runtime, box: Box, principal: Subscriber, now: Now
) -> EndpointWithSecret:
    secret = new_secret()
    overlap = timedelta(hours=runtime.settings.webhook_rotation_overlap_hours)
    endpoint = await _changed(
        app,
        endpoint_id,
        principal,
        lambda e: e.rotate(
            sealed_secret=box.seal(secret),
            previous_until=now + overlap,
            now=now,
            by=principal.subject,
        ),
    )
    return EndpointWithSecret(**EndpointView.of(endpoint).model_dump(), secret=secret)


@webhooks.post("/{endpoint_id}/disable", response_model=EndpointView, summary="Pause deliveries")
async def disable_endpoint(endpoint_id: UUID, app: App, principal: Subscriber) -> EndpointView:
    endpoint = await _changed(
        app, endpoint_id, principal, lambda e: e.disable(by=principal.subject)
    )
    return EndpointView.of(endpoint)


@webhooks.post(
    "/{endpoint_id}/enable",
    response_model=EndpointView,
    summary="Resume deliveries (also after a service suspended them)",
)
async def enable_endpoint(endpoint_id: UUID, app: App, principal: Subscriber) -> EndpointView:
    by = principal.subject
    endpoint = await _changed(app, endpoint_id, principal, lambda e: e.enable(by=by))
    return EndpointView.of(endpoint)


@webhooks.delete("/{endpoint_id}", response_model=EndpointView, summary="Unsubscribe")
async def delete_endpoint(endpoint_id: UUID, app: App, principal: Subscriber) -> EndpointView:
    by = principal.subject
    endpoint = await _changed(app, endpoint_id, principal, lambda e: e.delete(by=by))
    return EndpointView.of(endpoint)
