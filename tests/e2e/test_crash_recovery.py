"""Commissions killed with SIGKILL mid-stream: after a restart its projection equals a rebuild
from the logs, with every contract's bonus line once: nothing missing, nothing twice."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from shared.auth import Role
from tests.conftest import JWT_SECRET, PARTNER_BODY, STUCK_SECONDS, bearer, eventually
from tests.e2e.conftest import SERVICES, Stack

CONTRACTS = 200


def contract_body(partner_id: str, n: int) -> dict[str, Any]:
    return {
        "partner_id": partner_id,
        "customer": {"name": f"Customer {n}", "country": "US", "domain": f"customer{n}.com"},
        "start_date": "2027-01-01",
        "mrr": {"amount": f"{100 + n}.00", "currency": "USD"},
        "external_id": f"opp-{n}",
    }


def dealreg(*args: str, database_url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "dealreg.cli", *args],
        env={"DATABASE_URL": database_url, "DEALREG_JWT_SECRET": JWT_SECRET, "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=STUCK_SECONDS * 5,  # a rebuild reads every log: safety net only
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.long
def test_sigkill_in_the_middle_loses_nothing_and_doubles_nothing(stack: Stack) -> None:
    crm = bearer(Role.CRM)
    with stack.client("tiering") as tiering, stack.client("registration") as registration:
        partner_id = tiering.post(
            "/v1/partners", json=PARTNER_BODY, headers=bearer(Role.ADMIN)
        ).json()["partner_id"]
        contract_ids = []
        for n in range(CONTRACTS):
            if n == CONTRACTS // 2:
                stack.kill("commissions")  # SIGKILL: no shutdown, no goodbye
            response = registration.post(
                "/v1/contracts", json=contract_body(partner_id, n), headers=crm
            )
            assert response.status_code == 201, response.text
            contract_ids.append(response.json()["contract_id"])

    stack.start("commissions")
    stack.wait_ready("commissions")
    finance = bearer(Role.FINANCE)
    with stack.client("commissions") as commissions:

        def all_lines() -> list[dict[str, Any]] | None:
            lines: list[dict[str, Any]] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = commissions.get("/v1/ledger", params=params, headers=finance).json()
                lines += page["lines"]
                if not (cursor := page["next_cursor"]):
                    return lines if len(lines) >= CONTRACTS else None

        lines = eventually(all_lines)
    assert sorted(line["contract_id"] for line in lines) == sorted(contract_ids)
    with psycopg.connect(stack.database_url) as conn:
        decided = conn.execute(
            "SELECT count(*) FROM commissions_events WHERE topic LIKE '%Contract.Opened'"
        ).fetchone()
    assert decided == (CONTRACTS,)

    # each service's projections, rebuilt from the logs by the CLI beside the live ones, match
    for service in SERVICES:
        report = dealreg(
            "rebuild", service, "--into", f"check_{service}", database_url=stack.database_url
        )
        assert report["identical"], report
