"""One program time with the clocks behind the wall clock: a clock that was last run to an
earlier day stands behind, the program's present is the wall clock's (time never runs
backwards), and the three services date the same fact by the same day (decision 16)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.auth import Role
from tests.conftest import bearer, eventually, registration_body
from tests.integration.conftest import Clients

pytestmark = pytest.mark.postgres

ADMIN, CRM = bearer(Role.ADMIN), bearer(Role.CRM)


def movements(clients: Clients, partner: str) -> list[dict[str, Any]]:
    response = clients.tiering.get(
        "/v1/tiers/movements", params={"partner_id": partner, "motion": "sell"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["movements"]
    return found


def test_clocks_behind_the_wall_clock_date_every_fact_by_the_same_present(
    clients: Clients,
) -> None:
    clients.run_clocks(datetime(2025, 6, 1, tzinfo=UTC))  # long before the wall clock
    today = datetime.now(UTC).date()
    partner = clients.enrol()
    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=CRM
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["status"] == "approved"
    signed = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registered.json()["registration_id"],
            "start_date": today.isoformat(),
            "term_months": 12,
            "mrr": {"amount": "3000.00", "currency": "USD"},  # 36,000 a year: certified
        },
        headers=CRM,
    )
    assert signed.status_code == 201, signed.text
    reported = {today.isoformat(), datetime.now(UTC).date().isoformat()}  # across a midnight

    promoted = eventually(
        lambda: [m for m in movements(clients, partner) if m["tier"] == "certified"]
    )
    assert promoted[0]["effective_on"] in reported  # not 2025-06-01, not another day

    def bonus() -> list[dict[str, Any]]:
        lines = clients.ledger(partner_id=partner)
        return [line for line in lines if line["rule"] == "new_business_bonus"]

    (line,) = eventually(bonus)
    assert line["earned_in"] == promoted[0]["effective_on"][:7]
    assert line["amount"] == {"amount": "1800.00", "currency": "USD"}  # 5% of 36,000.00
