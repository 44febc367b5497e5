"""Disagreements the model-based test found between the services and DOMAIN.md, each shrunk to
its smallest form and kept as a plain test (``tests/model/test_program_model.py`` finds them
among random histories; these say exactly what is wrong)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.auth import Role
from tests.conftest import bearer
from tests.model.reference import DEFAULT, Policy
from tests.model.test_program_model import (
    ADMIN,
    CRM,
    START,
    Services,
    document,
)

pytestmark = pytest.mark.postgres


def service_disagrees(why: str) -> pytest.MarkDecorator:
    """A case the services get wrong (reported, not fixed here): it must keep failing until it
    is fixed, and then this marker goes."""
    return pytest.mark.xfail(strict=True, reason=why)


@pytest.fixture
def services(postgres_admin_url: str) -> Iterator[Services]:
    running = Services(postgres_admin_url)
    try:
        running.run_clocks(START)
        yield running
    finally:
        running.close()


def enrol(services: Services, *, sell: bool = True) -> str:
    body = {
        "legal_name": "Northwind",
        "home_country": "DE",
        "regions": ["EMEA"],
        "motions": ["sell"] if sell else [],
        "function": "sales",
        "category": "solution_reseller",
    }
    response = services.tiering.post("/v1/partners", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    partner_id: str = response.json()["partner_id"]
    return partner_id


def win(
    services: Services,
    partner: str,
    customer: str,
    *,
    start: date,
    months: int,
    mrr: str,
    motion: str = "sell",
) -> str:
    registered = services.registration.post(
        "/v1/registrations",
        json={
            "partner_id": partner,
            "customer": {"name": customer, "country": "DE", "domain": f"{customer[:3]}.de"},
            "product_line": "cloud",
            "motion": motion,
            "estimated_value": {"amount": "1000.00", "currency": "USD"},
            "expected_close": start.isoformat(),
        },
        headers=CRM,
    )
    assert registered.status_code == 201, registered.text
    signed = services.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registered.json()["registration_id"],
            "start_date": start.isoformat(),
            "term_months": months,
            "mrr": {"amount": mrr, "currency": "USD"},
        },
        headers=CRM,
    )
    assert signed.status_code == 201, signed.text
    services.settle()
    contract_id: str = signed.json()["contract_id"]
    return contract_id


def post(services: Services, path: str, body: dict[str, Any]) -> None:
    response = services.registration.post(path, json=body, headers=CRM)
    assert response.status_code < 300, response.text
    services.settle()


def sell_tier(services: Services, partner: str) -> str:
    response = services.tiering.get(f"/v1/partners/{partner}", headers=ADMIN)
    assert response.status_code == 200, response.text
    tier: str = response.json()["tiers"]["sell"]
    return tier


def movements(services: Services, partner: str) -> list[tuple[str, str, str]]:
    response = services.tiering.get(
        "/v1/tiers/movements", params={"partner_id": partner, "motion": "sell"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return [(m["tier"], m["effective_on"], m["reason"]) for m in response.json()["movements"]]


def test_a_renewal_term_that_starts_after_the_cancellation_never_counts(
    services: Services,
) -> None:
    """DOMAIN.md: "a cancelled contract never counts after that day, whenever it is reported".
    A one-month contract (2,000 a year) is renewed for twelve months at 2,100 (25,200: enough
    for certified), then cancelled from 15 January, before the renewal starts on 1 February.
    Tiering unbooks only the term in force on the cancellation's day and counts the renewal
    from its start: the partner is promoted to certified on 1 February by a contract that ended
    on 15 January."""
    partner = enrol(services)
    contract = win(services, partner, "Aurora Mining", start=START, months=1, mrr="2000.00")
    renewal = {"term_months": 12, "mrr": {"amount": "2100.00", "currency": "USD"}}
    post(services, f"/v1/contracts/{contract}/renewal", renewal)
    post(services, f"/v1/contracts/{contract}/cancellation", {"effective_on": "2027-01-15"})

    services.run_clocks(date(2027, 2, 2))

    assert sell_tier(services, partner) == "registered"


def test_a_clock_run_across_a_term_start_and_a_policy_day_dates_the_promotion_by_the_start(
    services: Services,
) -> None:
    """DOMAIN.md: promotion takes effect the moment a threshold is crossed; decision 16: a
    contract that starts later promotes on its start day. A contract of 27,000 a year starting on
    1 February promotes its partner on 1 February. When one clock run crosses that day and the
    day a policy version takes effect (1 March; here the same numbers again), tiering decides the
    policy's day first (every version, then every term start, then every review, each for the
    whole run): the partner is promoted on 1 March, a month late, as if the contract had not
    counted in February. Run day by day, the same history promotes on 1 February."""
    partner = enrol(services)
    adopted = services.tiering.post(
        "/v1/program/policy",
        params={"effective_on": "2027-03-01"},
        content=json.dumps(document(DEFAULT)),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert adopted.status_code == 201, adopted.text
    win(services, partner, "Aurora Mining", start=date(2027, 2, 1), months=12, mrr="2250.00")

    services.run_clocks(date(2027, 3, 2))

    assert movements(services, partner)[-1] == ("certified", "2027-02-01", "promotion")


def test_a_review_before_a_term_start_in_the_same_clock_run_does_not_count_a_quarter_below(
    services: Services,
) -> None:
    """DOMAIN.md: demotion happens only at a quarterly review after one full quarter below.
    A contract starting on 10 April promotes its partner to certified on 10 April. One clock run
    from 20 March to 1 May decides the term start first and the review of 1 April after it: the
    review finds the partner certified (from 10 April) but below certified on 1 April, and counts
    a quarter below. When the contract is then cancelled (from 1 June), the review of 1 July
    demotes at once: after one review below, not one full quarter."""
    services.run_clocks(date(2027, 3, 20))
    partner = enrol(services)
    contract = win(
        services, partner, "Aurora Mining", start=date(2027, 4, 10), months=12, mrr="2250.00"
    )
    services.run_clocks(date(2027, 5, 1))
    assert sell_tier(services, partner) == "certified"
    post(services, f"/v1/contracts/{contract}/cancellation", {"effective_on": "2027-06-01"})

    services.run_clocks(date(2027, 7, 2))

    assert sell_tier(services, partner) == "certified"  # below at one review only: grace


def test_a_cancelled_referral_does_not_count_toward_the_premium_associate_election(
    services: Services,
) -> None:
    """DOMAIN.md: a premium associate has 5 won referrals in the trailing 12 months, and a
    cancelled contract never counts after its cancellation takes effect (tiering's refer tier
    says so: 4 referrals, associate). Commissions counts every referral ever won: with one of
    five cancelled, the partner may still elect, and its sixth referral earns 3% of MRR every
    month instead of the 10% fee."""
    partner = enrol(services, sell=False)
    referrals = [
        win(services, partner, name, start=START, months=12, mrr="1000.00", motion="refer")
        for name in (
            "Aurora Mining",
            "Borealis Foods",
            "Cirrus Textiles",
            "Draco Shipping",
            "Equinox Dairy",
        )
    ]
    post(services, f"/v1/contracts/{referrals[0]}/cancellation", {"effective_on": "2027-01-10"})
    services.run_clocks(date(2027, 1, 11))

    own = bearer(Role.PARTNER, partner_id=uuid.UUID(partner))
    elected = services.commissions.post(f"/v1/partners/{partner}/premium-associate", headers=own)
    assert elected.status_code == 409, elected.text


def test_a_policy_version_in_force_from_today_promotes_today(services: Services) -> None:
    """DOMAIN.md: promotion takes effect the moment a threshold is crossed; a policy change is
    an event with an effective date. A partner selling 12,000 a year is registered; a version
    that makes 10,000 enough for certified, adopted to take effect today (allowed: it is not in
    the past), leaves it registered: the clock decides versions that take effect after the day
    it stands on, and today's never comes."""
    partner = enrol(services)
    win(services, partner, "Aurora Mining", start=START, months=12, mrr="1000.00")
    lower = Policy(
        certified=(
            (("first_year_value", Decimal("10000")),),
            (("approved_registrations", Decimal("10")),),
        )
    )
    adopted = services.tiering.post(
        "/v1/program/policy",
        params={"effective_on": START.isoformat()},
        content=json.dumps(document(lower)),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert adopted.status_code == 201, adopted.text
    services.settle()
    services.run_clocks(START + timedelta(days=1))

    assert movements(services, partner)[-1] == ("certified", START.isoformat(), "promotion")


def ledger_rules(services: Services, contract: str) -> set[tuple[str, str]]:
    response = services.commissions.get(
        "/v1/ledger", params={"contract_id": contract}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return {(line["rule"], line["rate"]) for line in response.json()["lines"]}


@service_disagrees("registration: the incumbent is one contract, the registering partner's own")
def test_a_partner_with_its_own_contract_still_poaches_another_partners_renewal(
    services: Services,
) -> None:
    """DOMAIN.md rule 6: when a customer has an active contract through partner A, a
    registration by another partner B in the 90 days before that contract's end is poaching, and
    B's margin on the contract it wins is capped at 5%. A wins Aurora for three months from
    1 January (its renewal window is open at once); B wins Aurora too (poaching: capped), for
    three months from 2 January. B registers Aurora again the same day, and wins it: A's
    contract is still active and in its window, so this is poaching too. Registration looks at
    one contract only (the one ending last; on a tie, the lower contract id, so the answer
    changes from run to run), finds B's own, and flags nothing: B earns its locked 10% (B was
    certified when it first won Aurora), not 5%."""
    a, b = enrol(services), enrol(services)
    win(services, b, "Borealis Foods", start=START, months=12, mrr="2250.00")  # B: certified
    win(services, a, "Aurora Mining", start=START, months=3, mrr="1000.00")
    first = win(services, b, "Aurora Mining", start=date(2027, 1, 2), months=3, mrr="1000.00")
    services.run_clocks(date(2027, 1, 3))
    assert ledger_rules(services, first) == {("poaching_cap", "0.05")}

    again = win(services, b, "Aurora Mining", start=date(2027, 1, 3), months=3, mrr="1000.00")
    services.run_clocks(date(2027, 1, 4))

    assert ledger_rules(services, again) == {("poaching_cap", "0.05")}
