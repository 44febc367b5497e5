"""Rules 2 and 3 under real concurrency: 200 partners register one customer at the same moment,
each writing it one of four ways (DOMAIN.md, "Customers and identity": a customer is known by
its domain key and by its name and country key, and two registrations sharing either are the
same customer)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import httpx

from shared.auth import Role
from tests.conftest import PARTNER_BODY, bearer, registration_body
from tests.e2e.conftest import Stack

SPELLINGS: list[dict[str, Any]] = [
    {"name": "Racing Customer Ltd", "country": "GB", "domain": "https://www.racing-customer.co.uk"},
    {"name": "Racing Customer Ltd", "country": "GB", "email": "buyer@sales.racing-customer.co.uk"},
    {"name": "Racing Customer Ltd", "country": "GB"},
    {"name": "RACING customer, L.T.D.", "country": "GB"},
]
EACH = 50
RACERS = EACH * len(SPELLINGS)


def test_two_hundred_partners_racing_for_one_customer_written_four_ways_one_is_protected(
    stack: Stack,
) -> None:
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

    def register(n: int) -> httpx.Response:
        partner_id = partners[n]
        with stack.client("registration") as client:
            client.get("/healthz")  # connected before the start
            start.wait()
            return client.post(
                "/v1/registrations",
                json={**registration_body(partner_id), "customer": SPELLINGS[n % len(SPELLINGS)]},
                headers=bearer(Role.PARTNER, UUID(partner_id)),
            )

    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(register, range(RACERS)))

    assert [r.status_code for r in responses] == [201] * RACERS, [
        r.text for r in responses if r.status_code != 201
    ]
    outcomes = Counter(r.json()["status"] for r in responses)
    assert outcomes == {"approved": 1, "conflict": RACERS - 1}
    winner = next(r.json() for r in responses if r.json()["status"] == "approved")
    again_on = (date.fromisoformat(winner["protected_until"]) + timedelta(days=1)).isoformat()
    for response in responses:
        body = response.json()
        if body["status"] == "conflict":
            assert winner["registration_id"] not in response.text  # the holder stays hidden
            assert body["may_register_again_on"] == again_on
            assert [flag["rule"] for flag in body["flags"]] == ["first-to-register"]
