"""Rule 2 under real concurrency: fifty partners register one customer at the same moment."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import httpx

from shared.auth import Role
from tests.conftest import PARTNER_BODY, bearer, registration_body
from tests.e2e.conftest import Stack

RACERS = 50


def test_fifty_partners_racing_for_one_customer_one_is_protected(stack: Stack) -> None:
    with stack.client("tiering") as tiering:
        partners = [
            tiering.post(
                "/v1/partners",
                json={**PARTNER_BODY, "legal_name": f"Racer {n}"},
                headers=bearer(Role.ADMIN),
            ).json()["partner_id"]
            for n in range(RACERS)
        ]
    start = threading.Barrier(RACERS)

    def register(partner_id: str) -> httpx.Response:
        with stack.client("registration") as client:
            client.get("/healthz")  # connected before the start
            start.wait()
            return client.post(
                "/v1/registrations",
                json=registration_body(
                    partner_id, domain="https://www.racing-customer.example.com"
                ),
                headers=bearer(Role.PARTNER, UUID(partner_id)),
            )

    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(register, partners))

    assert [r.status_code for r in responses] == [201] * RACERS, [
        r.text for r in responses if r.status_code != 201
    ]
    outcomes = Counter(r.json()["status"] for r in responses)
    assert outcomes == {"approved": 1, "conflict": RACERS - 1}
    winner = next(r.json() for r in responses if r.json()["status"] == "approved")
    for response in responses:
        body = response.json()
        if body["status"] == "conflict":
            assert winner["registration_id"] not in response.text  # the holder stays hidden
            assert body["may_register_again_on"]
