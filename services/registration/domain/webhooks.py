"""Webhook endpoints: where a partner portal (or the program) wants events delivered."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

import shared.contracts as published
from shared.contracts import WEBHOOK_EVENT_TYPES, publishes


class EndpointError(ValueError):
    """A change an endpoint cannot take."""


def _event_types(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - WEBHOOK_EVENT_TYPES)
    if unknown:
        raise EndpointError(
            f"no webhook event types {unknown}; they are {sorted(WEBHOOK_EVENT_TYPES)}"
        )
    if not event_types:
        raise EndpointError("an endpoint wants at least one event type")
    return sorted(set(event_types))


@publishes(Changed=published.WebhookEndpointChanged)
class Endpoint(Aggregate):
    class Created(Aggregate.Created):
        partner_id: UUID | None

    class Changed(Aggregate.Event):
        change: str
        url: str
        event_types: list[str]
        partner_id: UUID | None
        enabled: bool
        secrets: list[dict[str, Any]]
        description: str
        changed_by: str

    @event(Created)
    def __init__(self, partner_id: UUID | None) -> None:
        self.partner_id = partner_id
        self.url = ""
        self.event_types: list[str] = []
        self.enabled = True
        self.deleted = False
        self.secrets: list[dict[str, Any]] = []
        self.description = ""

    @classmethod
    def create(
        cls,
        *,
        url: str,
        event_types: list[str],
        partner_id: UUID | None,
        description: str,
        sealed_secret: str,
        by: str,
    ) -> Endpoint:
        types = _event_types(event_types)
        endpoint = cls(partner_id)
        endpoint._change(
            "created",
            by,
            url=url,
            event_types=types,
            secrets=[{"sealed": sealed_secret, "until": None}],
            description=description,
        )
        return endpoint

    def _change(self, change: str, by: str, **state: Any) -> None:
        if self.deleted:
            raise EndpointError("the endpoint was deleted")
        current = {
            "url": self.url,
            "event_types": self.event_types,
            "enabled": self.enabled,
            "secrets": self.secrets,
            "description": self.description,
        }
        self.changed(
            change=change,
            partner_id=self.partner_id,
            changed_by=by,
            **{**current, **state},
        )

    @event(Changed)
    def changed(
        self,
        change: str,
        url: str,
        event_types: list[str],
        partner_id: UUID | None,
        enabled: bool,
        secrets: list[dict[str, Any]],
        description: str,
        changed_by: str,
    ) -> None:
        self.url = url
        self.event_types = event_types
        self.enabled = enabled
        self.secrets = secrets
        self.description = description
        self.deleted = change == "deleted"

    def update(
        self, *, url: str | None, event_types: list[str] | None, description: str | None, by: str
    ) -> None:
        self._change(
            "updated",
            by,
            url=url or self.url,
            event_types=_event_types(event_types) if event_types is not None else self.event_types,
            description=self.description if description is None else description,
        )

    def rotate(
        self, *, sealed_secret: str, previous_until: datetime, now: datetime, by: str
    ) -> None:
        """A new secret signs from now on; the ones before keep signing until ``previous_until``
        (the overlap), so that a receiver can switch without losing a message."""
        kept = []
        for secret in self.secrets:
            until = secret["until"]
            if until is None or datetime.fromisoformat(until) > now:
                ends = (
                    previous_until
                    if until is None
                    else min(previous_until, datetime.fromisoformat(until))
                )
                kept.append({"sealed": secret["sealed"], "until": ends.isoformat()})
        self._change("rotated", by, secrets=[{"sealed": sealed_secret, "until": None}, *kept])

    def disable(self, *, by: str) -> None:
        if self.enabled:
            self._change("disabled", by, enabled=False)

    def enable(self, *, by: str) -> None:
        """Also resumes deliveries a service suspended (410 Gone, or failing for days)."""
        self._change("enabled", by, enabled=True)

    def delete(self, *, by: str) -> None:
        self._change("deleted", by, enabled=False)
