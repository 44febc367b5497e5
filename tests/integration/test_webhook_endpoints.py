"""Webhook endpoints over HTTP: who may subscribe to what, bad requests as problems, and what
a service does when an endpoint answers 410 Gone."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from shared.auth import Role
from tests.conftest import bearer, eventually, registration_body
from tests.integration.conftest import Clients

pytestmark = pytest.mark.postgres

ADMIN, CRM = bearer(Role.ADMIN), bearer(Role.CRM)
ENDPOINTS = "/v1/webhooks/endpoints"


def subscribe(clients: Clients, headers: dict[str, str], **body: Any) -> httpx.Response:
    payload = {"url": "http://127.0.0.1:9/hook", "event_types": ["DealRegistered"], **body}
    return clients.registration.post(ENDPOINTS, json=payload, headers=headers)


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"event_types": ["Everything"]}, 422, "endpoint-refused"),
        ({"event_types": []}, 422, "validation-error"),
        ({"url": "ftp://files.example/x"}, 422, "endpoint-url-refused"),
        ({"url": 7}, 422, "validation-error"),
    ],
)
def test_bad_subscriptions_are_problems(
    clients: Clients, body: dict[str, Any], status: int, kind: str
) -> None:
    response = subscribe(clients, ADMIN, **body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"/problems/{kind}"


def test_a_partner_subscribes_for_itself_only(clients: Clients) -> None:
    partner, other = uuid.uuid4(), uuid.uuid4()
    own = bearer(Role.PARTNER, partner_id=partner)
    assert subscribe(clients, own, partner_id=str(other)).status_code == 403
    assert subscribe(clients, CRM).status_code == 403
    created = subscribe(clients, own)
    assert created.status_code == 201, created.text
    assert created.json()["partner_id"] == str(partner)
    endpoint = created.json()["endpoint_id"]
    stranger = bearer(Role.PARTNER, partner_id=other)
    assert clients.registration.get(f"{ENDPOINTS}/{endpoint}", headers=stranger).status_code == 404
    shown = clients.registration.get(f"{ENDPOINTS}/{endpoint}", headers=own).json()
    assert "secret" not in shown  # shown once, at creation
    assert clients.registration.delete(f"{ENDPOINTS}/{endpoint}", headers=own).status_code == 200
    again = clients.registration.post(f"{ENDPOINTS}/{endpoint}/enable", headers=own)
    assert again.status_code == 409


def test_an_endpoint_that_answers_410_is_suspended_until_enabled(clients: Clients) -> None:
    dispatcher = clients.registration.app.state.runtime.dispatcher  # type: ignore[attr-defined]
    answers = iter([410])
    dispatcher.stop()
    dispatcher.transport = httpx.MockTransport(lambda request: httpx.Response(next(answers, 200)))
    dispatcher.start()
    partner = clients.enrol()
    endpoint = subscribe(clients, ADMIN).json()["endpoint_id"]

    def register(domain: str) -> None:
        body = registration_body(partner, domain=domain)
        assert (
            clients.registration.post("/v1/registrations", json=body, headers=CRM).status_code
            == 201
        )

    def deliveries() -> list[dict[str, Any]]:
        page = clients.registration.get(
            "/v1/webhooks/deliveries", params={"endpoint_id": endpoint}, headers=ADMIN
        ).json()
        return list(page["deliveries"])

    register("first.example")
    (gone,) = eventually(lambda: [d for d in deliveries() if d["status"] == "failed"])
    assert gone["last_status"] == 410
    events = clients.registration.get("/v1/events", params={"limit": 1000}, headers=ADMIN).json()
    assert [
        e["data"]["reason"] for e in events["events"] if e["type"] == "WebhookEndpointSuspended"
    ] == ["the endpoint answered 410 Gone"]

    register("second.example")  # suspended: it waits
    eventually(lambda: len(deliveries()) == 2)
    assert {d["status"] for d in deliveries()} == {"failed", "pending"}

    enabled = clients.registration.post(f"{ENDPOINTS}/{endpoint}/enable", headers=ADMIN)
    assert enabled.status_code == 200, enabled.text
    eventually(lambda: {d["status"] for d in deliveries()} == {"failed", "delivered"})
    requeued = clients.registration.post(
        "/v1/webhooks/recovery",
        json={"endpoint_id": endpoint, "since": "2000-01-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert requeued.json() == {"requeued": 1}
    eventually(lambda: {d["status"] for d in deliveries()} == {"delivered"})
