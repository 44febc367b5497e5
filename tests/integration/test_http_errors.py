"""Every service answers bad requests with problem+json, never a bare 500."""

from __future__ import annotations

import uuid

import pytest

from shared.auth import Role
from tests.conftest import bearer, eventually
from tests.integration.conftest import Clients

PROTECTED = {
    "tiering": ("POST", "/v1/partners", {"legal_name": 7}),
    "registration": ("POST", "/v1/registrations", {"customer": "nope"}),
    "commissions": ("GET", "/v1/ledger?period_from=last-month", None),
}


@pytest.fixture
def clients(shared_clients: Clients) -> Clients:
    """Every request here is refused or only reads: one start of the services for them all."""
    return shared_clients


def assert_problem(response: object, status: int, kind: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["type"] == f"/problems/{kind}"
    assert body["status"] == status
    assert body["detail"]
    return body


@pytest.mark.parametrize("service", list(PROTECTED))
def test_no_token_wrong_role_and_malformed_body(clients: Clients, service: str) -> None:
    client = getattr(clients, service)
    method, path, bad_body = PROTECTED[service]
    assert_problem(client.request(method, path, json=bad_body), 401, "unauthenticated")
    assert_problem(
        client.request(method, path, json=bad_body, headers={"Authorization": "Bearer junk"}),
        401,
        "unauthenticated",
    )
    assert_problem(
        client.request(
            method,
            path,
            json=bad_body,
            headers=bearer(Role.AUDITOR) if service != "commissions" else bearer(Role.CRM),
        ),
        403,
        "forbidden-role",
    )
    body = assert_problem(
        client.request(method, path, json=bad_body, headers=bearer(Role.ADMIN)),
        422,
        "validation-error",
    )
    assert body["errors"]


@pytest.mark.parametrize("service", list(PROTECTED))
def test_the_log_is_for_auditors_and_admins(clients: Clients, service: str) -> None:
    client = getattr(clients, service)
    assert client.get("/v1/events", headers=bearer(Role.AUDITOR)).status_code == 200
    assert client.get("/v1/events", headers=bearer(Role.ADMIN)).status_code == 200
    assert_problem(client.get("/v1/events", headers=bearer(Role.CRM)), 403, "forbidden-role")
    assert_problem(
        client.get("/v1/events?after=-1", headers=bearer(Role.AUDITOR)), 422, "validation-error"
    )


@pytest.mark.parametrize("service", list(PROTECTED))
def test_health_readiness_metrics_and_openapi(clients: Clients, service: str) -> None:
    client = getattr(clients, service)
    assert client.get("/healthz").json() == {"status": "ok", "service": service}
    # as an orchestrator does: poll until the followers lead and have caught up
    ready = eventually(lambda: (answer := client.get("/readyz")).status_code == 200 and answer)
    assert ready.json() == {"status": "ready", "service": service}
    metrics = client.get("/metrics").text
    assert "dealreg_subscription_lag_events" in metrics
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert document["webhooks"]  # what it sends partner portals, with each body's schema


def test_unknown_ids_and_paths_are_problems(clients: Clients) -> None:
    admin = bearer(Role.ADMIN)
    missing = "00000000-0000-4000-8000-000000000000"
    assert_problem(
        clients.registration.get(f"/v1/registrations/{missing}", headers=admin),
        404,
        "registration-not-found",
    )
    assert_problem(
        clients.tiering.get(f"/v1/partners/{missing}", headers=admin), 404, "partner-not-found"
    )
    assert_problem(clients.registration.get("/v1/nowhere"), 404, "not-found")
    assert_problem(
        clients.registration.get("/v1/registrations?cursor=bm9wZQ", headers=admin),
        404,
        "unknown-cursor",
    )
    assert_problem(
        clients.registration.post(
            "/v1/admin/clock", json={"until": "2027-01-01T00:00:00"}, headers=admin
        ),
        422,
        "validation-error",
    )


@pytest.mark.parametrize("service", list(PROTECTED))
def test_every_write_answers_garbage_with_a_problem(clients: Clients, service: str) -> None:
    """Every POST of the service's OpenAPI, with a body that fits nothing: a 4xx, explained."""
    client = getattr(clients, service)
    paths = client.get("/openapi.json").json()["paths"]
    for template, operations in paths.items():
        if "post" not in operations:
            continue
        path = template
        for name, value in (
            ("{partner_id}", str(uuid.uuid4())),
            ("{motion}", "sell"),
            ("{registration_id}", str(uuid.uuid4())),
            ("{contract_id}", str(uuid.uuid4())),
        ):
            path = path.replace(name, value)
        for body in ({"unexpected": [1, {"deep": None}]}, [], "text"):
            response = client.post(path, json=body, headers=bearer(Role.ADMIN))
            assert 400 <= response.status_code < 500, (template, body, response.text)
            assert response.headers["content-type"] == "application/problem+json", template
