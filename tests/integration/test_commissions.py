"""Commissions over HTTP, in process: the premium associate election, the rates a policy
adopted at tiering sets, and bad requests answered as problems."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth import Role
from tests.conftest import bearer, eventually, registration_body
from tests.integration.conftest import Clients

pytestmark = pytest.mark.postgres

CRM, ADMIN, FINANCE = bearer(Role.CRM), bearer(Role.ADMIN), bearer(Role.FINANCE)
# fixed, not random: every test process must collect the same parametrized ids
UNKNOWN = uuid.UUID("00000000-0000-4000-8000-00000000dead")


def refer(clients: Clients, partner: str, n: int, start: str) -> str:
    body = {**registration_body(partner, domain=f"referred{n}.com"), "motion": "refer"}
    referred = clients.registration.post("/v1/registrations", json=body, headers=CRM)
    assert referred.status_code == 201, referred.text
    signed = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": referred.json()["registration_id"],
            "start_date": start,
            "term_months": 12,
            "mrr": {"amount": "1000.00", "currency": "USD"},
        },
        headers=CRM,
    )
    assert signed.status_code == 201, signed.text
    contract_id: str = signed.json()["contract_id"]
    return contract_id


def test_premium_associate_is_elected_after_five_won_referrals(clients: Clients) -> None:
    partner = clients.enrol()
    own = bearer(Role.PARTNER, partner_id=uuid.UUID(partner))
    start = (datetime.now(UTC) - timedelta(days=40)).date().isoformat()
    election = f"/v1/partners/{partner}/premium-associate"

    refused = clients.commissions.post(election, headers=own)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "needs 5 won referrals" in refused.json()["detail"]

    for n in range(5):
        refer(clients, partner, n, start)
    fees = eventually(lambda: len(found := clients.ledger(partner_id=partner)) == 5 and found)
    assert {(line["rule"], line["amount"]["amount"]) for line in fees} == {
        ("referral_fee", "1200.00")  # 10% of 12,000.00
    }

    other = bearer(Role.PARTNER, partner_id=uuid.uuid4())
    assert clients.commissions.post(election, headers=other).status_code == 403
    assert clients.commissions.post(election, headers=CRM).status_code == 403
    elected = clients.commissions.post(election, headers=own)
    assert elected.status_code == 201, elected.text
    assert elected.json()["won_referrals_in_window"] == 5
    assert elected.json()["premium_associate"]["by"] == "test-partner"
    again = clients.commissions.post(election, headers=own)
    assert again.status_code == 409

    sixth = refer(clients, partner, 5, start)
    eventually(
        lambda: (
            clients.commissions.get(f"/v1/partners/{partner}/account", headers=own).json()[
                "won_referrals_in_window"
            ]
            == 6
        )
    )
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    ran = clients.commissions.post("/v1/admin/clock", json={"until": until}, headers=ADMIN)
    assert ran.status_code == 200, ran.text
    lines = eventually(lambda: clients.ledger(contract_id=sixth))
    assert {(line["rule"], line["amount"]["amount"]) for line in lines} == {
        ("premium_associate", "30.00")  # 3% of 1,000.00 for each month begun
    }


def test_a_policy_adopted_at_tiering_sets_the_commission_rates_from_its_day(
    clients: Clients,
) -> None:
    document = json.loads(
        clients.tiering.get("/v1/program/policy/1", headers=ADMIN).content.decode()
    )
    document["commissions"]["resale_margin"]["certified"] = "0.12"
    adopted = clients.tiering.post(
        "/v1/program/policy",
        params={"effective_on": "2099-03-01", "note": "certified earns 12%"},
        content=json.dumps(document),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert adopted.status_code == 201, adopted.text

    def rates_on(day: str) -> dict[str, Any]:
        response = clients.commissions.get("/v1/rates", params={"on": day}, headers=FINANCE)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    eventually(lambda: rates_on("2099-03-01")["policy_version"] == 2)
    assert rates_on("2099-03-01")["rates"]["resale_margin"]["certified"] == "0.12"
    before = rates_on("2099-02-28")
    assert (before["policy_version"], before["rates"]["resale_margin"]["certified"]) == (1, "0.10")


def test_a_policy_without_a_margin_for_each_sell_tier_is_refused(clients: Clients) -> None:
    document = json.loads(
        clients.tiering.get("/v1/program/policy/1", headers=ADMIN).content.decode()
    )
    del document["commissions"]["resale_margin"]["alliance"]
    refused = clients.tiering.post(
        "/v1/program/policy",
        params={"effective_on": "2099-03-01"},
        content=json.dumps(document),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert refused.status_code == 422, refused.text
    assert "resale_margin" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params", "status", "kind"),
    [
        ("/v1/statements", {"period": "2027-13"}, 422, "validation-error"),
        (f"/v1/statements/{UNKNOWN}/2027-01", {}, 404, "statement-not-found"),
        (f"/v1/statements/{UNKNOWN}/January", {}, 422, "validation-error"),
        ("/v1/statements", {"cursor": "not-a-cursor"}, 404, "unknown-cursor"),
        ("/v1/statements/export", {}, 422, "validation-error"),
        ("/v1/ledger", {"rule": "bribe"}, 422, "validation-error"),
        ("/v1/ledger", {"cursor": "bm9wZQ"}, 404, "unknown-cursor"),
        ("/v1/payouts", {"period": "last-month"}, 422, "validation-error"),
        (f"/v1/partners/{UNKNOWN}/account", {}, 404, "partner-not-found"),
        ("/v1/rates", {"on": "someday"}, 422, "validation-error"),
    ],
)
def test_bad_requests_are_problems(
    clients: Clients, path: str, params: dict[str, str], status: int, kind: str
) -> None:
    response = clients.commissions.get(path, params=params, headers=ADMIN)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"/problems/{kind}"


def test_a_partner_reads_its_own_commissions_only(clients: Clients) -> None:
    partner, other = uuid.uuid4(), uuid.uuid4()
    own = bearer(Role.PARTNER, partner_id=partner)
    for path in (f"/v1/statements/{other}/2027-01", f"/v1/partners/{other}/account"):
        response = clients.commissions.get(path, headers=own)
        assert response.status_code == 403, response.text
    listed = clients.commissions.get("/v1/ledger", params={"partner_id": str(other)}, headers=own)
    assert listed.status_code == 403
    assert clients.commissions.get("/v1/payouts?period=2027-01", headers=own).status_code == 403
