"""What a service has to deliver: the endpoints (followed from registration's log) and its
outbox (one message per published event of its own log, written with the tracking position)."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any, Literal
from uuid import NAMESPACE_URL, uuid5

from psycopg.types.json import Jsonb
from pydantic import BaseModel, create_model

from shared.contracts import DELIVERED_BY, PublishedEvent, WebhookEndpointChanged
from shared.projections import Statements, View, on

_MESSAGE = uuid5(NAMESPACE_URL, "urn:dealreg:webhook-message")
_ENVELOPE = frozenset({"log", "position", "stream_version", "occurred_at", "correlation_id"})


def message_id(event: PublishedEvent) -> str:
    """One id per event, the same on every attempt and every endpoint (``webhook-id``)."""
    return "msg_" + uuid5(_MESSAGE, f"{event.log}#{event.position}").hex


def message_body(event: PublishedEvent) -> str:
    """The JSON body, made once: ``type``, ``timestamp`` and the facts a partner may see."""
    data = event.model_dump(mode="json", exclude=set(_ENVELOPE | event.withheld))
    return json.dumps(
        {"type": event.event_name, "timestamp": event.occurred_at.isoformat(), "data": data},
        separators=(",", ":"),
    )


def tables(service: str) -> dict[str, str]:
    return {
        "endpoints": f"{service}_webhook_endpoints",
        "messages": f"{service}_webhook_messages",
        "deliveries": f"{service}_webhook_deliveries",
        "attempts": f"{service}_webhook_attempts",
        "states": f"{service}_webhook_endpoint_states",
        "fan_out": f"{service}_webhook_fan_out",
    }


class WebhookView(View):
    """The endpoints, as registration publishes them, and the outbox: one message per
    published event of the service's own log. One view (one connection pool), fed by one
    follower per log it reads."""

    endpoints_table: str
    messages_table: str

    @on(WebhookEndpointChanged)
    def _endpoint_changed(self, curs: Statements, event: WebhookEndpointChanged) -> None:
        curs.execute(
            self.statement(
                f"INSERT INTO {{schema}}.{self.endpoints_table} AS e"  # noqa: S608 (constant)
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (endpoint_id) DO UPDATE SET url = excluded.url,"
                " event_types = excluded.event_types, partner_id = excluded.partner_id,"
                " enabled = excluded.enabled, secrets = excluded.secrets,"
                " deleted = excluded.deleted,"
                " enabled_since = CASE WHEN %s THEN excluded.enabled_since ELSE e.enabled_since END"
            ),
            (
                event.endpoint_id,
                event.url,
                event.event_types,
                event.partner_id,
                event.enabled and event.change != "deleted",
                Jsonb(event.secrets),
                event.change == "deleted",
                event.occurred_at,
                event.occurred_at,
                event.change == "enabled",  # also resumes what a service suspended
            ),
        )

    def _message(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                f"INSERT INTO {{schema}}.{self.messages_table}"  # noqa: S608 (constant)
                " (message_id, position, type, partner_id, occurred_at, body)"
                " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (message_id) DO NOTHING"
            ),
            (
                message_id(event),
                event.position,
                event.event_name,
                getattr(event, "partner_id", None),
                event.occurred_at,
                message_body(event),
            ),
        )


def webhook_view(service: str) -> type[WebhookView]:
    names = tables(service)
    endpoints, messages = names["endpoints"], names["messages"]

    @on(*DELIVERED_BY[service])
    def message(self: WebhookView, curs: Statements, event: Any) -> None:
        self._message(curs, event)

    return type(
        f"{service.title()}Webhooks",
        (WebhookView,),
        {
            "name": f"{service}_webhooks",
            "endpoints_table": endpoints,
            "messages_table": messages,
            "tables": (endpoints, messages),
            "create_sql": (
                f"CREATE TABLE IF NOT EXISTS {{schema}}.{endpoints} ("
                " endpoint_id uuid PRIMARY KEY, url text NOT NULL, event_types text[] NOT NULL,"
                " partner_id uuid, enabled boolean NOT NULL, secrets jsonb NOT NULL,"
                " deleted boolean NOT NULL, created_at timestamptz NOT NULL,"
                " enabled_since timestamptz NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {{schema}}.{messages} ("
                " message_id text PRIMARY KEY, position bigint NOT NULL UNIQUE,"
                " type text NOT NULL, partner_id uuid, occurred_at timestamptz NOT NULL,"
                " body text NOT NULL)",
            ),
            "_handle_message": message,
        },
    )


@cache
def webhook_bodies(service: str) -> dict[str, type[BaseModel]]:
    """The body of each webhook a service sends, as a model (for its OpenAPI ``webhooks``).
    Made once per process: building the models took a tenth of a second per service."""
    bodies: dict[str, type[BaseModel]] = {}
    for contract in DELIVERED_BY[service]:
        name = contract.event_name
        data = create_model(  # type: ignore[call-overload]
            f"{name}Data",
            __doc__=contract.__doc__,
            **{
                field: (info.annotation, info)
                for field, info in contract.model_fields.items()
                if field not in _ENVELOPE | contract.withheld
            },
        )
        kind: Any = Literal[name]
        bodies[name] = create_model(
            f"{name}Webhook",
            type=(kind, ...),
            timestamp=(datetime, ...),
            data=(data, ...),
        )
    return bodies
