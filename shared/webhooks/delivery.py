"""Delivery: each message to each endpoint that wants it, signed, retried on a schedule, every
attempt logged. One dispatcher per service leads (advisory lock); a standby waits.

At least once: a delivery is marked done only after a 2xx, so a dispatcher killed mid-send
sends again (same ``webhook-id``) after its lease on the delivery lapses.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import NAMESPACE_URL, UUID, uuid5

import httpx
import psycopg
from eventsourcing.domain import Aggregate, event
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

import shared.contracts as published
from shared.audit.causes import SERVICE_ROLE, Cause, caused_by
from shared.contracts import publishes
from shared.database import Database
from shared.settings import ServiceSettings
from shared.subscriptions import Follower, Leadership
from shared.webhooks.addresses import EndpointUrlError, pinned, resolve_endpoint
from shared.webhooks.outbox import tables
from shared.webhooks.secrets import SecretBox, signature

log = logging.getLogger(__name__)

_SUSPENSION = uuid5(NAMESPACE_URL, "urn:dealreg:webhook-suspension")


@publishes(Suspended=published.WebhookEndpointSuspended)
class Suspension(Aggregate):
    """A service's decision to stop delivering to an endpoint, in its own log."""

    @staticmethod
    def create_id(service: str, endpoint_id: UUID, at: datetime) -> UUID:
        return uuid5(_SUSPENSION, f"{service}/{endpoint_id}/{at.isoformat()}")

    @event("Suspended")
    def __init__(
        self,
        service: str,
        endpoint_id: UUID,
        reason: str,
        failing_since: datetime | None,
        at: datetime,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.reason = reason


@dataclass(frozen=True)
class Claimed:
    message_id: str
    endpoint_id: UUID
    attempts: int
    body: str
    url: str
    secrets: list[dict[str, Any]]


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None
    retry_after: float | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds, or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0)


class Dispatcher:
    def __init__(
        self,
        service: str,
        database: Database,
        settings: ServiceSettings,
        *,
        box: SecretBox | None,
        endpoints: Follower,
        save: Callable[..., Any],
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.database = database
        self.database_url = database.url
        self.schema = schema = database.schema
        self.settings = settings
        self.box = box
        self.endpoints = endpoints
        self.save = save
        self.transport = transport
        self.now = now
        self.leadership = Leadership(database.url, f"webhooks:{service}")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        names = tables(service)
        self._t = {key: Identifier(schema, table) for key, table in names.items()}
        self.ensure_tables()

    # --- tables ---------------------------------------------------------------------------
    def ensure_tables(self) -> None:
        t = self._t
        with self.database.creating_tables() as conn:
            conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " message_id text NOT NULL, endpoint_id uuid NOT NULL, status text NOT NULL,"
                    " attempts int NOT NULL DEFAULT 0, next_attempt_at timestamptz,"
                    " last_status int, last_error text, delivered_at timestamptz,"
                    " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,"
                    " PRIMARY KEY (message_id, endpoint_id))"
                ).format(t["deliveries"])
            )
            conn.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON {} (next_attempt_at) WHERE status = 'pending'"
                ).format(Identifier(f"{self.service}_webhook_deliveries_due"), t["deliveries"])
            )
            conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " attempt_id bigserial PRIMARY KEY, message_id text NOT NULL,"
                    " endpoint_id uuid NOT NULL, attempt int NOT NULL,"
                    " attempted_at timestamptz NOT NULL, status_code int, duration_ms int NOT NULL,"
                    " error text, manual boolean NOT NULL DEFAULT false)"
                ).format(t["attempts"])
            )
            conn.execute(
                SQL("CREATE INDEX IF NOT EXISTS {} ON {} (message_id, endpoint_id)").format(
                    Identifier(f"{self.service}_webhook_attempts_message"), t["attempts"]
                )
            )
            conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " endpoint_id uuid PRIMARY KEY, failing_since timestamptz,"
                    " suspended_at timestamptz, suspended_reason text)"
                ).format(t["states"])
            )
            conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (only_row boolean PRIMARY KEY DEFAULT true"
                    " CHECK (only_row), position bigint NOT NULL)"
                ).format(t["fan_out"])
            )

    # --- the worker -----------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.webhook_poll_seconds <= 0:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"webhooks:{self.service}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.webhook_timeout_seconds + 5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self.leadership.hold(self._stopping) as leading:
                    if leading:
                        asyncio.run(self._serve())
            except Exception:  # keep delivering after a lost connection
                log.exception("webhook dispatcher of %s failed; restarting", self.service)
                self._stopping.wait(1.0)

    async def _serve(self) -> None:
        limits = httpx.Limits(max_connections=self.settings.webhook_concurrency)
        async with httpx.AsyncClient(
            timeout=self.settings.webhook_timeout_seconds,
            follow_redirects=False,
            limits=limits,
            transport=self.transport,
        ) as client:
            with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
                while not self._stopping.is_set():
                    fanned = self.fan_out(conn)
                    sent = await self.deliver_due(conn, client)
                    if not fanned and not sent:
                        await asyncio.sleep(self.settings.webhook_poll_seconds)

    # --- fan-out --------------------------------------------------------------------------
    def fan_out(self, conn: psycopg.Connection[Any]) -> int:
        """Messages past the fan-out position become one delivery per endpoint that wants
        them (its type, its partner, created before the event). Waits while the endpoints are
        not caught up, so that an endpoint created just before an event is never missed."""
        if self.endpoints.pending():
            return 0
        t = self._t
        now = self.now()
        with conn.transaction():
            row = conn.execute(
                SQL("SELECT position FROM {} FOR UPDATE").format(t["fan_out"])
            ).fetchone()
            after = row["position"] if row else 0
            batch = conn.execute(
                SQL(
                    "SELECT max(position) AS last, count(*) AS n FROM ("
                    " SELECT position FROM {m} WHERE position > %s ORDER BY position LIMIT 500"
                    ") b"
                ).format(m=t["messages"]),
                (after,),
            ).fetchone()
            if batch is None or not batch["n"]:
                return 0
            conn.execute(
                SQL(
                    "INSERT INTO {d} (message_id, endpoint_id, status, next_attempt_at,"
                    "  created_at, updated_at)"
                    " SELECT m.message_id, e.endpoint_id, 'pending', %s, %s, %s"
                    " FROM {m} m JOIN {e} e ON e.enabled AND m.type = ANY(e.event_types)"
                    "  AND (e.partner_id IS NULL OR e.partner_id = m.partner_id)"
                    "  AND e.created_at <= m.occurred_at"
                    " WHERE m.position > %s AND m.position <= %s"
                    " ON CONFLICT DO NOTHING"
                ).format(m=t["messages"], d=t["deliveries"], e=t["endpoints"]),
                (now, now, now, after, batch["last"]),
            )
            conn.execute(
                SQL(
                    "INSERT INTO {} (only_row, position) VALUES (true, %s)"
                    " ON CONFLICT (only_row) DO UPDATE SET position = excluded.position"
                ).format(t["fan_out"]),
                (batch["last"],),
            )
        return int(batch["n"])

    # --- sending --------------------------------------------------------------------------
    def claim(self, conn: psycopg.Connection[Any], limit: int) -> list[Claimed]:
        """Due deliveries to endpoints in service, leased for the length of one attempt."""
        t = self._t
        now = self.now()
        # Longer than one attempt can take: a dispatcher killed mid-send leaves its deliveries
        # to be sent again once the lease lapses.
        lease = now + timedelta(seconds=self.settings.webhook_timeout_seconds * 2 + 1)
        with conn.transaction():
            rows = conn.execute(
                SQL(
                    "UPDATE {d} d SET next_attempt_at = %s, updated_at = %s"
                    " FROM {m} m, {e} e WHERE (d.message_id, d.endpoint_id) IN ("
                    "  SELECT d2.message_id, d2.endpoint_id FROM {d} d2"
                    "  JOIN {e} e2 ON e2.endpoint_id = d2.endpoint_id AND e2.enabled"
                    "  LEFT JOIN {s} s ON s.endpoint_id = d2.endpoint_id"
                    "  WHERE d2.status = 'pending' AND d2.next_attempt_at <= %s"
                    "  AND (s.suspended_at IS NULL OR s.suspended_at < e2.enabled_since)"
                    "  ORDER BY d2.next_attempt_at LIMIT %s FOR UPDATE OF d2 SKIP LOCKED)"
                    " AND m.message_id = d.message_id AND e.endpoint_id = d.endpoint_id"
                    " RETURNING d.message_id, d.endpoint_id, d.attempts, m.body, e.url,"
                    " e.secrets"
                ).format(d=t["deliveries"], m=t["messages"], e=t["endpoints"], s=t["states"]),
                (lease, now, now, limit),
            ).fetchall()
        return [Claimed(**row) for row in rows]

    async def deliver_due(self, conn: psycopg.Connection[Any], client: httpx.AsyncClient) -> int:
        claimed = self.claim(conn, self.settings.webhook_concurrency * 4)
        if not claimed:
            return 0
        semaphore = asyncio.Semaphore(self.settings.webhook_concurrency)

        async def attempt(item: Claimed) -> Outcome:
            async with semaphore:
                return await self.attempt(client, item)

        outcomes = await asyncio.gather(*(attempt(item) for item in claimed))
        self.record(conn, outcomes)
        return len(outcomes)

    def secrets_in_force(self, sealed: Sequence[dict[str, Any]], at: datetime) -> list[str]:
        assert self.box is not None, "webhook secrets need DEALREG_WEBHOOK_KEY"
        return [
            self.box.open(s["sealed"])
            for s in sealed
            if s.get("until") is None or datetime.fromisoformat(s["until"]) > at
        ]

    async def attempt(self, client: httpx.AsyncClient, item: Claimed) -> Outcome:
        at = self.now()
        headers = {
            "content-type": "application/json",
            "user-agent": "dealreg-webhooks/1",
            "webhook-id": item.message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature(
                item.message_id, at, item.body, self.secrets_in_force(item.secrets, at)
            ),
        }
        started = time.perf_counter()
        target, extensions = item.url, {}
        if not self.settings.webhook_allow_private_urls:
            try:  # at each attempt: a name may come to resolve to a private address
                address = await asyncio.to_thread(resolve_endpoint, item.url)
            except EndpointUrlError as refused:
                elapsed = int((time.perf_counter() - started) * 1000)
                return Outcome(item, at, None, elapsed, f"refused: {refused}", None)
            target, headers["host"] = pinned(item.url, address)
            extensions["sni_hostname"] = urlsplit(item.url).hostname or ""
        try:
            response = await client.post(
                target, content=item.body.encode(), headers=headers, extensions=extensions
            )
        except httpx.HTTPError as failure:
            elapsed = int((time.perf_counter() - started) * 1000)
            return Outcome(item, at, None, elapsed, f"{type(failure).__name__}: {failure}", None)
        elapsed = int((time.perf_counter() - started) * 1000)
        problem = None if 200 <= response.status_code < 300 else response.text[:500]
        if 300 <= response.status_code < 400:
            problem = f"redirect to {response.headers.get('location')} (not followed)"
        return Outcome(
            item,
            at,
            response.status_code,
            elapsed,
            problem,
            retry_after_seconds(response.headers.get("retry-after"), at),
        )

    def next_attempt(self, attempts: int, retry_after: float | None) -> datetime | None:
        """When to try again after ``attempts`` failed attempts; None once the schedule is
        spent."""
        schedule = self.settings.webhook_retry_schedule_seconds
        if attempts >= len(schedule):
            return None
        delay = schedule[attempts] * random.uniform(0.9, 1.1)  # noqa: S311 (jitter, not security)
        if retry_after is not None:
            delay = max(delay, min(retry_after, 86400.0))
        return self.now() + timedelta(seconds=delay)

    def record(self, conn: psycopg.Connection[Any], outcomes: Sequence[Outcome]) -> None:
        t = self._t
        suspensions: list[Suspension] = []
        with conn.transaction():
            for outcome in outcomes:
                item = outcome.claimed
                attempts = item.attempts + 1
                conn.execute(
                    SQL(
                        "INSERT INTO {} (message_id, endpoint_id, attempt, attempted_at,"
                        " status_code, duration_ms, error) VALUES (%s,%s,%s,%s,%s,%s,%s)"
                    ).format(t["attempts"]),
                    (
                        item.message_id,
                        item.endpoint_id,
                        attempts,
                        outcome.at,
                        outcome.status_code,
                        outcome.duration_ms,
                        outcome.error,
                    ),
                )
                if outcome.delivered:
                    status, next_at = "delivered", None
                elif outcome.status_code == 410:
                    status, next_at = "failed", None
                else:
                    next_at = self.next_attempt(attempts, outcome.retry_after)
                    status = "pending" if next_at else "failed"
                conn.execute(
                    SQL(
                        "UPDATE {} SET status = %s, attempts = %s, next_attempt_at = %s,"
                        " last_status = %s, last_error = %s, updated_at = %s,"
                        " delivered_at = CASE WHEN %s THEN %s ELSE delivered_at END"
                        " WHERE message_id = %s AND endpoint_id = %s"
                    ).format(t["deliveries"]),
                    (
                        status,
                        attempts,
                        next_at,
                        outcome.status_code,
                        outcome.error,
                        outcome.at,
                        outcome.delivered,
                        outcome.at,
                        item.message_id,
                        item.endpoint_id,
                    ),
                )
                suspension = self._health(conn, outcome)
                if suspension is not None:
                    suspensions.append(suspension)
        for suspension in suspensions:
            cause = Cause(
                actor=f"{self.service}:webhooks",
                role=SERVICE_ROLE,
                correlation_id=f"webhook-endpoint:{suspension.endpoint_id}",
                causation_id=f"webhook-delivery:{suspension.endpoint_id}",
            )
            with caused_by(cause):
                self.save(suspension)

    def _health(self, conn: psycopg.Connection[Any], outcome: Outcome) -> Suspension | None:
        """A success clears the failing streak; a 410, or failing for too long, suspends."""
        t = self._t
        endpoint_id = outcome.claimed.endpoint_id
        if outcome.delivered:  # no row, or no streak, is a healthy endpoint: nothing to write
            conn.execute(
                SQL(
                    "UPDATE {} SET failing_since = NULL"
                    " WHERE endpoint_id = %s AND failing_since IS NOT NULL"
                ).format(t["states"]),
                (endpoint_id,),
            )
            return None
        row = conn.execute(
            SQL(
                "INSERT INTO {s} AS s (endpoint_id, failing_since) VALUES (%s, %s)"
                " ON CONFLICT (endpoint_id) DO UPDATE"
                " SET failing_since = coalesce(s.failing_since, excluded.failing_since)"
                " RETURNING failing_since, suspended_at,"
                " (SELECT enabled_since FROM {e} WHERE endpoint_id = %s) AS enabled_since"
            ).format(s=t["states"], e=t["endpoints"]),
            (endpoint_id, outcome.at, endpoint_id),
        ).fetchone()
        assert row is not None
        if row["suspended_at"] is not None and row["suspended_at"] >= row["enabled_since"]:
            return None
        failing_for = outcome.at - row["failing_since"]
        if outcome.status_code == 410:
            reason = "the endpoint answered 410 Gone"
        elif failing_for >= timedelta(days=self.settings.webhook_disable_after_days):
            reason = f"every delivery failed for {failing_for.days} days"
        else:
            return None
        conn.execute(
            SQL(
                "UPDATE {} SET suspended_at = %s, suspended_reason = %s WHERE endpoint_id = %s"
            ).format(t["states"]),
            (outcome.at, reason, endpoint_id),
        )
        log.warning(
            "webhooks of %s to endpoint %s suspended: %s", self.service, endpoint_id, reason
        )
        return Suspension(
            service=self.service,
            endpoint_id=endpoint_id,
            reason=reason,
            failing_since=row["failing_since"],
            at=outcome.at,
        )


@dataclass
class WebhookDelivery:
    """A service's webhook plumbing: its view, the followers that feed it, its dispatcher."""

    view: Any
    followers: list[Follower]
    dispatcher: Dispatcher
