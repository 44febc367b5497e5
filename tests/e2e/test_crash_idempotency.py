"""A CRM retries after the service was killed: every Idempotency-Key ends with one effect and one
answer, wherever the SIGKILL fell (before the work, during it, between the commit and the
answer). Contracts that name a customer only are the hard case: no CRM id would catch a second
signature, only the key."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from shared.auth import Role
from tests.conftest import bearer
from tests.e2e.conftest import Stack

ROUNDS = 3
SINGLE_WRITES = 40
IMPORT_ROWS = 300
SERVICE = "registration"


@pytest.fixture
def registration(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(database_url, tmp_path, extra_env={"DEALREG_IDEMPOTENCY_LEASE_SECONDS": "1"})
    try:
        stack.start(SERVICE)
        stack.wait_ready(SERVICE)
        yield stack
    finally:
        stack.stop_all()


def contract(name: str) -> dict[str, Any]:
    return {
        "customer": {"name": name, "country": "US", "domain": f"{name}.example"},
        "start_date": "2027-01-01",
        "mrr": {"amount": "100.00", "currency": "USD"},
    }


def requests_of_round(number: int) -> dict[str, dict[str, Any]]:
    """Each key's request: single contracts, and an import of many."""
    keyed: dict[str, dict[str, Any]] = {
        f"single-{number}-{i}": {
            "url": "/v1/contracts",
            "json": contract(f"crash-{number}-{i}"),
        }
        for i in range(SINGLE_WRITES)
    }
    rows = "\n".join(
        json.dumps({**contract(f"bulk-{number}-{i}"), "external_id": f"opp-{number}-{i}"})
        for i in range(IMPORT_ROWS)
    )
    keyed[f"import-{number}"] = {
        "url": "/v1/imports/contracts",
        "content": rows.encode(),
        "headers": {"Content-Type": "application/x-ndjson"},
    }
    return keyed


def send(stack: Stack, key: str, request: dict[str, Any]) -> httpx.Response | None:
    headers = {**bearer(Role.CRM), "Idempotency-Key": key, **request.get("headers", {})}
    try:
        with stack.client(SERVICE) as client:
            return client.post(
                request["url"],
                json=request.get("json"),
                content=request.get("content"),
                headers=headers,
            )
    except httpx.TransportError:
        return None  # the process died under it


def final_answer(stack: Stack, key: str, request: dict[str, Any]) -> httpx.Response:
    """Retry as a CRM does until the key has an answer (the claim of the killed process
    runs out after its lease)."""
    for _ in range(2000):
        response = send(stack, key, request)
        if response is not None and response.status_code != 409:
            return response
        time.sleep(0.05)
    raise AssertionError(f"{key} never got an answer")


def contracts_signed(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT originator_id FROM registration_events WHERE topic = 'ContractSigned'"
        ).fetchall()
    return [str(row[0]) for row in rows]


def effects(answer: httpx.Response) -> list[str]:
    body = answer.json()
    if "results" in body:
        # All recorded by this key's one run: "unchanged" would mean an earlier partial run.
        assert body["recorded"] == IMPORT_ROWS, body
        return [row["id"] for row in body["results"]]
    return [body["contract_id"]]


@pytest.mark.long
def test_a_retry_after_a_sigkill_has_one_effect_and_one_answer(registration: Stack) -> None:
    chance = random.Random()
    answered: dict[str, list[str]] = {}
    for number in range(ROUNDS):
        keyed = requests_of_round(number)
        with ThreadPoolExecutor(max_workers=8) as pool:
            for key, request in keyed.items():
                pool.submit(send, registration, key, request)
            time.sleep(chance.uniform(0.0, 1.5))  # anywhere in the work
            registration.kill(SERVICE)
        registration.start(SERVICE)
        registration.wait_ready(SERVICE)
        answers = {key: final_answer(registration, key, request) for key, request in keyed.items()}
        for key, answer in answers.items():
            assert answer.status_code in (200, 201), (key, answer.text)
            again = send(registration, key, keyed[key])
            assert again is not None
            assert again.headers.get("idempotent-replayed") == "true", (key, again.text)
            assert again.json() == answer.json()
            answered[key] = effects(answer)
    signed = contracts_signed(registration.database_url)
    every_effect = [contract_id for ids in answered.values() for contract_id in ids]
    assert len(signed) == len(set(signed)) == ROUNDS * (SINGLE_WRITES + IMPORT_ROWS)
    assert sorted(signed) == sorted(every_effect)
