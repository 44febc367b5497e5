"""Wires a service's webhooks: its view (endpoints and outbox), the followers, the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.postgres import PostgresApplicationRecorder

from shared.contracts import DELIVERED_BY, WebhookEndpointChanged
from shared.runtime import published_log
from shared.settings import ServiceSettings
from shared.subscriptions import Follower
from shared.webhooks.delivery import Dispatcher, WebhookDelivery
from shared.webhooks.outbox import webhook_view
from shared.webhooks.secrets import SecretBox


def webhook_delivery(
    service: str,
    database_url: str,
    settings: ServiceSettings,
    *,
    own_log: PostgresApplicationRecorder,
    registration_log: PostgresApplicationRecorder,
    save: Callable[..., Any],
) -> WebhookDelivery:
    """``own_log`` and ``registration_log`` are readers the service already holds (the same
    one, for registration): connections are few."""
    schema = settings.db_schema
    view = webhook_view(service).open(database_url, schema=schema)
    delivered = list(DELIVERED_BY[service])
    if service == "registration":
        both = published_log(
            database_url,
            service,
            [WebhookEndpointChanged, *delivered],
            schema=schema,
            recorder=own_log,
        )
        followers = [Follower(both, view, database_url)]
    else:
        endpoints = published_log(
            database_url,
            "registration",
            [WebhookEndpointChanged],
            schema=schema,
            recorder=registration_log,
        )
        outbox = published_log(database_url, service, delivered, schema=schema, recorder=own_log)
        followers = [Follower(endpoints, view, database_url), Follower(outbox, view, database_url)]
    key = settings.resolved_webhook_key()
    dispatcher = Dispatcher(
        service,
        database_url,
        schema,
        settings,
        box=SecretBox(key) if key else None,
        endpoints=followers[0],
        save=save,
    )
    return WebhookDelivery(view=view, followers=followers, dispatcher=dispatcher)
