"""A CRM retries: the same Idempotency-Key and body get the same answer, and nothing twice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.auth import Role
from tests.conftest import PARTNER_BODY, bearer, registration_body
from tests.integration.conftest import Clients


def keyed(role: Role, key: str) -> dict[str, str]:
    return {**bearer(role), "Idempotency-Key": key}


def test_a_retry_gets_the_first_answer_and_records_nothing_new(clients: Clients) -> None:
    partner = clients.enrol()
    headers = keyed(Role.CRM, "sync-42")
    first = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=headers
    )
    retry = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=headers
    )
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    registered = [
        e
        for e in clients.registration.get(
            "/v1/events", params={"limit": 1000}, headers=bearer(Role.AUDITOR)
        ).json()["events"]
        if e["type"] == "DealRegistered"
    ]
    assert len(registered) == 1


def test_the_same_key_for_another_request_is_refused(clients: Clients) -> None:
    partner = clients.enrol()
    headers = keyed(Role.CRM, "sync-43")
    clients.registration.post("/v1/registrations", json=registration_body(partner), headers=headers)
    other: dict[str, Any] = {**registration_body(partner, domain="globex.com")}
    reused = clients.registration.post("/v1/registrations", json=other, headers=headers)
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"] == "/problems/idempotency-key-reused"
    # keys belong to their subject: another client may use the same string
    mine = clients.registration.post(
        "/v1/registrations",
        json=other,
        headers={**bearer(Role.CHANNEL_MANAGER), "Idempotency-Key": "sync-43"},
    )
    assert mine.status_code == 201


def test_every_service_honours_the_key(clients: Clients) -> None:
    headers = keyed(Role.ADMIN, "enrol-1")
    first = clients.tiering.post("/v1/partners", json=PARTNER_BODY, headers=headers)
    again = clients.tiering.post("/v1/partners", json=PARTNER_BODY, headers=headers)
    assert first.json()["partner_id"] == again.json()["partner_id"]
    clock = keyed(Role.ADMIN, "tick-1")
    body = {"until": "2030-01-01T00:00:00Z"}
    assert clients.commissions.post("/v1/admin/clock", json=body, headers=clock).status_code == 200
    assert (
        clients.commissions.post("/v1/admin/clock", json=body, headers=clock).headers[
            "idempotent-replayed"
        ]
        == "true"
    )


def test_racing_retries_record_once(clients: Clients) -> None:
    partner = clients.enrol()
    headers = keyed(Role.CRM, "race-1")

    def send(_: int) -> int:
        return clients.registration.post(
            "/v1/registrations", json=registration_body(partner), headers=headers
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(send, range(8)))
    assert set(codes) <= {201, 409}
    assert codes.count(201) >= 1
    registered = [
        e
        for e in clients.registration.get(
            "/v1/events", params={"limit": 1000}, headers=bearer(Role.AUDITOR)
        ).json()["events"]
        if e["type"] == "DealRegistered"
    ]
    assert len(registered) == 1


def test_a_bad_request_is_answered_the_same_way_again(clients: Clients) -> None:
    headers = keyed(Role.CRM, "broken-1")
    first = clients.registration.post("/v1/registrations", json={"nope": 1}, headers=headers)
    again = clients.registration.post("/v1/registrations", json={"nope": 1}, headers=headers)
    assert first.status_code == again.status_code == 422
    too_long = clients.registration.post(
        "/v1/registrations", json={}, headers=keyed(Role.CRM, "k" * 300)
    )
    assert too_long.status_code == 400
