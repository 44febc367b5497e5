"""What every service's HTTP API has in common: health, readiness, metrics, its log, its clock."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import fastapi_offline
from asgi_correlation_id import CorrelationIdFilter, CorrelationIdMiddleware
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import AwareDatetime, BaseModel

from shared.audit.api import audit_router
from shared.audit.causes import CauseMiddleware
from shared.auth import TokenVerifier, bearer_token
from shared.database import POOL_IDLE_SECONDS, asyncpg_dsn
from shared.dependencies import Admin, Runtime
from shared.edge import BodyLimit, SecurityHeaders
from shared.idempotency import WriteRequestMiddleware, install_answers
from shared.idempotency import ensure_table as ensure_idempotency_table
from shared.openapi import operation_id, publish_contract
from shared.problems import install_problem_handlers, problem_response
from shared.runtime import ServiceRuntime
from shared.webhooks.api import deliveries
from shared.webhooks.outbox import webhook_bodies

log = logging.getLogger(__name__)


def configure_logging(level: str, *, json_lines: bool) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(CorrelationIdFilter(uuid_length=32, default_value="-"))
    if json_lines:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
                rename_fields={"correlation_id": "request_id", "levelname": "level"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# --- the clock, for admins -----------------------------------------------------------------


class ClockAdvance(BaseModel):
    until: AwareDatetime


class ClockState(BaseModel):
    service: str
    now: datetime | None
    previous: datetime | None = None
    decisions: int = 0


clock_router = APIRouter(tags=["clock"])


@clock_router.get("/v1/admin/clock", response_model=ClockState, summary="How far time has run")
def read_clock(runtime: Runtime, _: Admin) -> ClockState:
    return ClockState(service=runtime.name, now=runtime.clock.current())


@clock_router.post(
    "/v1/admin/clock", response_model=ClockState, summary="Run time up to an instant"
)
def advance_clock(body: ClockAdvance, runtime: Runtime, _: Admin) -> ClockState:
    run = runtime.clock.advance(body.until)
    return ClockState(
        service=runtime.name, now=run.now, previous=run.previous, decisions=run.decisions
    )


# --- health, readiness, metrics --------------------------------------------------------------


class FollowerCollector(Collector):
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        lag = GaugeMetricFamily(
            "dealreg_subscription_lag_events",
            "Events of the followed log not yet applied by this projection",
            labels=["service", "subscription"],
        )
        position = GaugeMetricFamily(
            "dealreg_subscription_position",
            "Last position of the followed log applied by this projection",
            labels=["service", "subscription"],
        )
        stuck = GaugeMetricFamily(
            "dealreg_follower_stuck",
            "1 while the follower is stuck at an event it cannot apply, waiting for an operator"
            " (`dealreg followers list`)",
            labels=["service", "subscription"],
        )
        failures = CounterMetricFamily(
            "dealreg_follower_failures",
            "Failed attempts of this process to follow a log (lost connections included)",
            labels=["service", "subscription"],
        )
        try:
            stuck_at = {event.follower for event in self.runtime.stuck_events()}
        except Exception:  # a scrape must not fail because the database blinked
            log.warning("could not read the stuck events of %s", self.runtime.name, exc_info=True)
            stuck_at = None
        for follower in self.runtime.followers:
            labels = [self.runtime.name, follower.name]
            failures.add_metric(labels, follower.failures)
            if stuck_at is not None:
                stuck.add_metric(labels, int(follower.name in stuck_at))
            try:
                at = follower.position()
                behind = follower.pending()
            except Exception:  # a scrape must not fail because the database blinked
                log.warning("could not read the lag of %s", follower.name, exc_info=True)
                continue
            position.add_metric(labels, at)
            lag.add_metric(labels, behind)
        yield lag
        yield position
        yield stuck
        yield failures


def health_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz(runtime: Runtime) -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @router.get(
        "/readyz",
        summary="Ready: database reachable, subscriptions caught up, none stuck at an event",
    )
    def readyz(request: Request, runtime: Runtime) -> Response:
        lagging = []
        try:
            stuck = runtime.stuck_events()
            for follower in runtime.followers:
                if not follower.ready:
                    lagging.append(follower.name)
        except Exception as error:
            return problem_response(
                request, 503, "not-ready", f"The database cannot be reached: {error}"
            )
        if stuck:  # before "catching up": a stuck follower would be catching up forever
            return problem_response(
                request,
                503,
                "follower-stuck",
                "; ".join(event.describe() for event in stuck)
                + ". An operator resolves it with `dealreg followers` (see the README).",
                stuck=[event.as_json() for event in stuck],
            )
        if lagging:
            return problem_response(
                request,
                503,
                "not-ready",
                "Subscriptions are still catching up.",
                catching_up=lagging,
            )
        return JSONResponse({"status": "ready", "service": runtime.name})

    @router.get(
        "/metrics",
        summary="Prometheus metrics (with `DEALREG_METRICS_TOKEN` set, for that bearer token only)",
        response_class=Response,
    )
    def metrics(request: Request, runtime: Runtime) -> Response:
        expected = runtime.settings.metrics_token
        if expected is not None:
            scheme, given = bearer_token(request.headers.get("authorization", ""))
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.encode(), expected.get_secret_value().encode()
            ):
                return problem_response(
                    request,
                    401,
                    "unauthenticated",
                    "/metrics needs `Authorization: Bearer` with the scrape token.",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return router


def document_webhooks(api: FastAPI, service: str) -> None:
    """The webhooks the service sends, in its OpenAPI 3.1 document (``webhooks``)."""
    for name, body in webhook_bodies(service).items():

        def operation(payload: Any) -> None: ...

        operation.__annotations__ = {"payload": body, "return": None}
        api.webhooks.post(
            name,
            summary=f"{name}, signed by the Standard Webhooks spec",
            description="Headers: `webhook-id` (the same on every retry), `webhook-timestamp`,"
            " `webhook-signature` (`v1,<base64 HMAC-SHA256>` per secret in force). Answer 2xx"
            " within 15 s; `410 Gone` unsubscribes.",
            operation_id=f"webhook_{name}",
        )(operation)


DOCS_ASSETS = "/docs-assets"
"""Swagger UI 5 (OpenAPI 3.1), as the ``fastapi-offline`` package ships it."""


def serve_docs(api: FastAPI) -> None:
    """``/docs``: Swagger UI with its scripts and styles from this service, not a CDN."""
    assets = Path(fastapi_offline.__file__).parent / "static"
    api.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{api.title}: API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )


def create_service_api(
    runtime: ServiceRuntime,
    routers: Iterable[APIRouter],
    *,
    title: str,
    description: str,
    body_ceiling: int,
    start_workers: bool = True,
) -> FastAPI:
    """``body_ceiling``: the largest body any route of the service takes."""
    verifier = TokenVerifier(runtime.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(
            **asyncpg_dsn(runtime.database_url),
            min_size=1,
            max_size=runtime.settings.db_read_pool_max_connections,
            max_inactive_connection_lifetime=POOL_IDLE_SECONDS,
            server_settings={
                "search_path": runtime.schema,
                "application_name": f"dealreg-{runtime.name}",
            },
        )
        if start_workers:
            await run_in_threadpool(runtime.start)
        try:
            yield
        finally:
            await run_in_threadpool(runtime.close)
            await app.state.pool.close()

    api = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,  # served below, from this process: no CDN
        redoc_url=None,
    )
    serve_docs(api)
    api.state.runtime = runtime
    api.state.verifier = verifier
    registry = CollectorRegistry()
    registry.register(FollowerCollector(runtime))
    install_problem_handlers(api)
    ensure_idempotency_table(runtime.database, runtime.name)
    install_answers(api)
    # Inside the cause: a request's events are encoded when they are recorded, after it ran.
    api.add_middleware(
        WriteRequestMiddleware,
        service=runtime.name,
        schema=runtime.schema,
        settings=runtime.settings,
    )
    api.add_middleware(CauseMiddleware)
    api.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    api.add_middleware(BodyLimit, ceiling=body_ceiling)
    api.add_middleware(SecurityHeaders)  # the outermost: on every answer, a refusal's too
    api.include_router(health_router(registry))
    api.include_router(audit_router)
    api.include_router(clock_router)
    if runtime.dispatcher is not None:
        api.include_router(deliveries)
        document_webhooks(api, runtime.name)
    for router in routers:
        api.include_router(router)
    publish_contract(api)
    return api
