"""Wires a service's webhooks: its view (endpoints and outbox), the followers, the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.postgres import PostgresApplicationRecorder

from shared.contracts import DELIVERED_BY, WebhookEndpointChanged
from shared.database import Database
from shared.runtime import published_log
from shared.settings import ServiceSettings
from shared.subscriptions import Follower
from shared.webhooks.delivery import Dispatcher, WebhookDelivery
from shared.webhooks.outbox import webhook_view
from shared.webhooks.secrets import SecretBox


def webhook_delivery(
    service: str,
    database: Database,
    settings: ServiceSettings,
    *,
    own_log: PostgresApplicationRecorder,
    registration_log: PostgresApplicationRecorder,
    save: Callable[..., Any],
) -> WebhookDelivery:
    """``own_log`` and ``registration_log`` are readers the service already holds (the same
    one, for registration)."""
    view = webhook_view(service).open(database)
    delivered = list(DELIVERED_BY[service])
    if service == "registration":
        both = published_log(
            database, service, [WebhookEndpointChanged, *delivered], recorder=own_log
        )
        followers = [Follower(both, view, database)]
    else:
        endpoints = published_log(
            database, "registration", [WebhookEndpointChanged], recorder=registration_log
        )
        outbox = published_log(database, service, delivered, recorder=own_log)
        followers = [Follower(endpoints, view, database), Follower(outbox, view, database)]
    key = settings.resolved_webhook_key()
    dispatcher = Dispatcher(
        service,
        database,
        settings,
        box=SecretBox(key) if key else None,
        endpoints=followers[0],
        save=save,
    )
    return WebhookDelivery(view=view, followers=followers, dispatcher=dispatcher)
