"""Webhooks end to end: a real receiver verifies every delivery with `standardwebhooks`; it
fails the first three attempts of each message; partner A never hears of partner B; during a
rotation both secrets verify (issue 7)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from shared.auth import Role
from tests.conftest import PARTNER_BODY, bearer, eventually, registration_body
from tests.e2e.conftest import Stack
from tests.e2e.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def test_deliveries_are_signed_retried_and_scoped(stack: Stack, receiver: Receiver) -> None:
    admin, crm = bearer(Role.ADMIN), bearer(Role.CRM)
    with stack.client("tiering") as tiering, stack.client("registration") as registration:
        partners = [
            tiering.post("/v1/partners", json=PARTNER_BODY, headers=admin).json()["partner_id"]
            for _ in range(2)
        ]
        secrets: dict[str, str] = {}
        endpoints: dict[str, str] = {}
        for name, partner in zip(("a", "b"), partners, strict=True):
            created = registration.post(
                "/v1/webhooks/endpoints",
                json={"url": receiver.url(f"/{name}"), "event_types": ["DealRegistered"]},
                headers=bearer(Role.PARTNER, partner_id=UUID(partner)),
            )
            assert created.status_code == 201, created.text
            assert created.json()["secret"].startswith("whsec_")
            assert created.json()["partner_id"] == partner
            secrets[name] = created.json()["secret"]
            endpoints[name] = created.json()["endpoint_id"]

        def register(partner: str, domain: str) -> str:
            response = registration.post(
                "/v1/registrations", json=registration_body(partner, domain=domain), headers=crm
            )
            assert response.status_code == 201, response.text
            registration_id: str = response.json()["registration_id"]
            return registration_id

        a_deal = register(partners[0], "alpha.example")
        b_deal = register(partners[1], "beta.example")

        a = eventually(lambda: receiver.accepted("/a"))
        b = eventually(lambda: receiver.accepted("/b"))
        (a_message,) = a
        (b_message,) = b
        assert a_message.payload["type"] == "DealRegistered"
        assert a_message.payload["data"]["registration_id"] == a_deal
        assert b_message.payload["data"]["registration_id"] == b_deal
        # three failures, then success: four attempts, one webhook-id, each signed
        for path, name in (("/a", "a"), ("/b", "b")):
            attempts = receiver.to(path)
            assert [d.answered for d in attempts] == [500, 500, 500, 200]
            assert len({d.message_id for d in attempts}) == 1
            assert all(d.verifies_with(secrets[name]) for d in attempts)
        # partner A never hears about partner B, nor B about A
        assert all(d.payload["data"]["partner_id"] == partners[0] for d in receiver.to("/a"))
        assert all(d.payload["data"]["partner_id"] == partners[1] for d in receiver.to("/b"))

        # the attempt log, as partner A sees it
        own = bearer(Role.PARTNER, partner_id=UUID(partners[0]))
        log: list[dict[str, Any]] = registration.get(
            f"/v1/webhooks/deliveries/{a_message.message_id}/attempts",
            params={"endpoint_id": endpoints["a"]},
            headers=own,
        ).json()
        assert [entry["status_code"] for entry in log] == [500, 500, 500, 200]
        hidden = registration.get(
            f"/v1/webhooks/deliveries/{b_message.message_id}/attempts",
            params={"endpoint_id": endpoints["b"]},
            headers=own,
        )
        assert hidden.status_code == 404

        # a rotation: old and new secret both verify during the overlap
        rotated = registration.post(
            f"/v1/webhooks/endpoints/{endpoints['a']}/rotation", headers=own
        ).json()
        new_secret = rotated["secret"]
        assert new_secret != secrets["a"]
        receiver.failures_per_message = 0
        register(partners[0], "gamma.example")
        latest = eventually(
            lambda: [d for d in receiver.accepted("/a") if d.message_id != a_message.message_id]
        )
        assert latest[0].verifies_with(secrets["a"])
        assert latest[0].verifies_with(new_secret)


@pytest.mark.long
def test_a_dispatcher_killed_with_messages_pending_loses_none(
    stack: Stack, receiver: Receiver
) -> None:
    """SIGKILL while every message is still failing; after the restart each arrives."""
    stack.kill("registration", signal.SIGTERM)
    stack.extra_env["DEALREG_WEBHOOK_RETRY_SCHEDULE_SECONDS"] = json.dumps([0] + [0.5] * 60)
    stack.start("registration")
    stack.wait_ready("registration")
    receiver.failures_per_message = 10**6  # the portal is down
    admin, crm = bearer(Role.ADMIN), bearer(Role.CRM)
    with stack.client("tiering") as tiering:
        partner = tiering.post("/v1/partners", json=PARTNER_BODY, headers=admin).json()[
            "partner_id"
        ]
    with stack.client("registration") as registration:
        created = registration.post(
            "/v1/webhooks/endpoints",
            json={"url": receiver.url("/all"), "event_types": ["DealRegistered"]},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        for n in range(20):
            response = registration.post(
                "/v1/registrations",
                json=registration_body(partner, domain=f"customer{n}.example"),
                headers=crm,
            )
            assert response.status_code == 201, response.text
    eventually(lambda: len({d.message_id for d in receiver.to("/all")}) == 20)

    stack.kill("registration")  # SIGKILL, deliveries pending and some in flight
    receiver.failures_per_message = 0  # the portal is back
    stack.start("registration")
    stack.wait_ready("registration")

    delivered = eventually(
        lambda: len(ids := {d.message_id for d in receiver.accepted("/all")}) == 20 and ids
    )
    assert len(delivered) == 20
