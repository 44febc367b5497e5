"""A CRM retries: the same Idempotency-Key and body get the same answer, and nothing twice."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import psycopg
import pytest

from services.registration.api.contracts import ContractView
from shared.auth import Role, development_subject, mint_token
from tests.conftest import JWT_SECRET, PARTNER_BODY, bearer, registration_body
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


# --- keys belong to the verified caller (issue 18) -------------------------------------------


def forged_tokens(role: Role, partner_id: str, subject: str) -> dict[str, str]:
    """Tokens that carry a caller's claims without its signature."""
    now = int(time.time())
    claims = {"sub": subject, "role": role.value, "partner_id": partner_id, "aud": "dealreg"}
    return {
        "wrong signature": jwt.encode(
            {**claims, "exp": now + 600}, "another-secret-that-is-long-enough", algorithm="HS256"
        ),
        "alg none": jwt.encode({**claims, "exp": now + 600}, None, algorithm="none"),
        "expired": jwt.encode({**claims, "exp": now - 600}, JWT_SECRET, algorithm="HS256"),
    }


def registered(clients: Clients) -> list[dict[str, Any]]:
    events = clients.registration.get(
        "/v1/events", params={"limit": 1000}, headers=bearer(Role.AUDITOR)
    ).json()["events"]
    return [e for e in events if e["type"] == "DealRegistered"]


def test_a_forged_token_never_gets_a_stored_answer(clients: Clients) -> None:
    partner = clients.enrol()
    own = {**bearer(Role.PARTNER, uuid.UUID(partner)), "Idempotency-Key": "K"}
    body = registration_body(partner)
    first = clients.registration.post("/v1/registrations", json=body, headers=own)
    assert first.status_code == 201, first.text
    for name, token in forged_tokens(Role.PARTNER, partner, "test-partner").items():
        forged = clients.registration.post(
            "/v1/registrations",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "K"},
        )
        assert forged.status_code == 401, (name, forged.text)
        assert "idempotent-replayed" not in forged.headers
        assert first.json()["registration_id"] not in forged.text
    assert len(registered(clients)) == 1


def test_a_forged_token_cannot_spoil_a_key(clients: Clients) -> None:
    partner = clients.enrol()
    token = forged_tokens(Role.PARTNER, partner, "test-partner")["wrong signature"]
    for broken in (b"{not json", b'{"customer": 1}'):
        spoiling = clients.registration.post(
            "/v1/registrations",
            content=broken,
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": "K",
                "Content-Type": "application/json",
            },
        )
        assert spoiling.status_code in (400, 401, 422), spoiling.text
    real = clients.registration.post(
        "/v1/registrations",
        json=registration_body(partner),
        headers={**bearer(Role.PARTNER, uuid.UUID(partner)), "Idempotency-Key": "K"},
    )
    assert real.status_code == 201, real.text
    assert "idempotent-replayed" not in real.headers


def test_another_partner_with_the_same_key_and_subject_gets_its_own_answer(
    clients: Clients,
) -> None:
    a, b = clients.enrol(), clients.enrol()

    def as_partner(partner: str) -> dict[str, str]:
        token = mint_token(JWT_SECRET, Role.PARTNER, subject="dev", partner_id=uuid.UUID(partner))
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": "K"}

    first = clients.registration.post(
        "/v1/registrations", json=registration_body(a), headers=as_partner(a)
    )
    second = clients.registration.post(
        "/v1/registrations", json=registration_body(b), headers=as_partner(b)
    )
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in second.headers
    assert second.json().get("registration_id") != first.json()["registration_id"]
    assert {e["data"]["partner_id"] for e in registered(clients)} == {a, b}


def test_development_tokens_name_their_role_and_partner() -> None:
    partner = uuid.uuid4()
    assert development_subject(Role.CRM) != development_subject(Role.ADMIN)
    assert development_subject(Role.PARTNER, partner) != development_subject(
        Role.PARTNER, uuid.uuid4()
    )
    assert str(partner) in development_subject(Role.PARTNER, partner)


def test_a_rotated_secret_is_replayed_but_never_stored_in_clear(clients: Clients) -> None:
    admin = bearer(Role.ADMIN)
    endpoint = clients.registration.post(
        "/v1/webhooks/endpoints",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["DealRegistered"]},
        headers=admin,
    ).json()["endpoint_id"]
    rotation = f"/v1/webhooks/endpoints/{endpoint}/rotation"
    keyed = {**admin, "Idempotency-Key": "rotate-1"}
    first = clients.registration.post(rotation, headers=keyed)
    again = clients.registration.post(rotation, headers=keyed)
    assert first.status_code == again.status_code == 200, first.text
    assert again.headers["idempotent-replayed"] == "true"
    secret = first.json()["secret"]
    assert again.json()["secret"] == secret
    forged = forged_tokens(Role.ADMIN, "", "test-admin")["wrong signature"]
    stolen = clients.registration.post(
        rotation, headers={"Authorization": f"Bearer {forged}", "Idempotency-Key": "rotate-1"}
    )
    assert stolen.status_code == 401
    assert secret not in stolen.text
    runtime = clients.registration.app.state.runtime  # type: ignore[attr-defined]
    with psycopg.connect(runtime.database_url) as conn:
        bodies = [
            bytes(row[0])
            for row in conn.execute(
                f'SELECT body FROM "{runtime.schema}".registration_idempotency'  # noqa: S608
                " WHERE body IS NOT NULL"
            )
        ]
    assert bodies
    assert not any(secret.encode() in body or b"whsec_" in body for body in bodies)


def test_a_write_that_fails_after_deciding_records_nothing(
    clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events are recorded once the answer is known: a 500 while answering leaves none."""

    def broken(contract: Any) -> Any:
        raise RuntimeError("the answer could not be rendered")

    monkeypatch.setattr(ContractView, "of", staticmethod(broken))
    body = {
        "customer": {"name": "Initech", "country": "US", "domain": "initech.example"},
        "start_date": "2027-01-01",
        "mrr": {"amount": "100.00", "currency": "USD"},
    }
    with pytest.raises(RuntimeError):
        clients.registration.post(
            "/v1/contracts", json=body, headers=keyed(Role.CRM, "breaks-after-deciding")
        )
    events = clients.registration.get(
        "/v1/events", params={"limit": 1000}, headers=bearer(Role.AUDITOR)
    ).json()["events"]
    assert not [e for e in events if e["type"] == "ContractSigned"]
    monkeypatch.undo()
    retried = clients.registration.post(
        "/v1/contracts", json=body, headers=keyed(Role.CRM, "breaks-after-deciding")
    )
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
