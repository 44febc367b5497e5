"""Issue 17, over HTTP: one program time, and the rules that move money at its edges.

One test per case of the issue, with its numbers. The issue's scenario began with the clocks on
2026-12-02 (the wall date then) and ran them to 2027-04-03. Time in a service never runs behind
the wall clock, so when these tests run later than that day every date of the issue is moved on
by whole years (``ISSUE_YEARS``): the same calendar, the same answers. Every clock is run to an
explicit instant before anything is dated by it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from dateutil.relativedelta import relativedelta
from fastapi.testclient import TestClient

from shared.auth import Role
from tests.conftest import bearer, eventually
from tests.integration.conftest import Clients

pytestmark = pytest.mark.postgres

CRM, ADMIN, FINANCE = bearer(Role.CRM), bearer(Role.ADMIN), bearer(Role.FINANCE)
AUDITOR = bearer(Role.AUDITOR)

ISSUE_FIRST_DAY = date(2026, 12, 2)
"""The wall date on which the issue's scenario started its clocks."""
ISSUE_YEARS = next(
    years
    for years in range(100)
    if ISSUE_FIRST_DAY + relativedelta(years=years) >= datetime.now(UTC).date()
)
"""Whole years by which the issue's dates move so that none is behind the wall clock."""


def day(iso: str) -> date:
    """A day of the issue, on the calendar these tests run on."""
    return date.fromisoformat(iso) + relativedelta(years=ISSUE_YEARS)


def period(iso_month: str) -> str:
    return day(f"{iso_month}-01").isoformat()[:7]


# --- driving the services -------------------------------------------------------------------


def run_clocks(clients: Clients, until: datetime | str) -> None:
    """Every service's clock to one instant (a day's ISO date: noon UTC of that day)."""
    if isinstance(until, str):
        until = datetime.combine(day(until), datetime.min.time(), UTC) + timedelta(hours=12)
    clients.run_clocks(until)


COMPANIES = [
    ("Globex", "globex.com"),
    ("Initech", "initech.io"),
    ("Umbrella Pharmaceuticals", "umbrella-pharma.net"),
    ("Hooli", "hooli.xyz"),
    ("Soylent Foods", "soylent.org"),
    ("Stark Industries", "starkindustries.com"),
    ("Wayne Enterprises", "wayne-ent.co.uk"),
    ("Cyberdyne Systems", "cyberdyne.ai"),
    ("Tyrell", "tyrell.biz"),
    ("Wonka Confectionery", "wonka.fr"),
    ("Vandelay Imports", "vandelay.com"),
    ("Massive Dynamic", "massivedynamic.de"),
]


def register(clients: Clients, partner: str, n: int, *, motion: str = "sell") -> dict[str, Any]:
    name, domain = COMPANIES[n]
    body = {
        "partner_id": partner,
        "customer": {"name": name, "country": "US", "domain": domain},
        "product_line": "cloud",
        "motion": motion,
        "estimated_value": {"amount": "12000.00", "currency": "USD"},
        "expected_close": (day("2026-12-02") + relativedelta(years=2)).isoformat(),
    }
    response = clients.registration.post("/v1/registrations", json=body, headers=CRM)
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    return registered


def sign(
    clients: Clients,
    *,
    mrr: str,
    start: date,
    registration: dict[str, Any] | None = None,
    partner: str | None = None,
    customer: int | None = None,
) -> str:
    named = None
    if customer is not None:
        name, domain = COMPANIES[customer]
        named = {"name": name, "country": "US", "domain": domain}
    return clients.sign(
        start=start,
        mrr=mrr,
        registration_id=registration["registration_id"] if registration else None,
        partner_id=partner,
        customer=named,
    )


def cancel(clients: Clients, contract_id: str, effective_on: date) -> None:
    response = clients.registration.post(
        f"/v1/contracts/{contract_id}/cancellation",
        json={"effective_on": effective_on.isoformat(), "reason": "customer left"},
        headers=CRM,
    )
    assert response.status_code in (200, 201), response.text


def standing(clients: Clients, partner: str) -> dict[str, Any]:
    response = clients.tiering.get(f"/v1/partners/{partner}", headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def sell(result: dict[str, Any]) -> dict[str, Any]:
    (found,) = [m for m in result["standing"] if m["motion"] == "sell"]
    motion: dict[str, Any] = found
    return motion


def logged(client: TestClient, stream_id: str, kind: str) -> list[dict[str, Any]]:
    """Events of one stream whose type ends with ``kind``, from the service's log itself."""
    found, after = [], 0
    while True:
        page = client.get("/v1/events", params={"after": after, "limit": 1000}, headers=AUDITOR)
        assert page.status_code == 200, page.text
        events = page.json()["events"]
        found += [e for e in events if e["stream_id"] == stream_id and e["type"].endswith(kind)]
        if not events:
            return found
        after = page.json()["next_after"]


def tier_changes(clients: Clients, partner: str, motion: str = "sell") -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in logged(clients.tiering, partner, "TierChanged")
        if e["data"]["motion"] == motion
    ]


def commissions_settled(clients: Clients) -> None:
    """Commissions has taken in everything published so far, and its ledger every line of it:
    a run of its clock to where it stands first brings each of its followers up to date."""
    current = clients.commissions.get("/v1/admin/clock", headers=ADMIN).json()["now"]
    until = current or datetime.now(UTC).isoformat()
    ran = clients.commissions.post("/v1/admin/clock", json={"until": until}, headers=ADMIN)
    assert ran.status_code == 200, ran.text
    ran = clients.commissions.post("/v1/admin/clock", json={"until": until}, headers=ADMIN)
    assert ran.status_code == 200, ran.text


# --- 1. auto-approved registrations count toward the early indicator -------------------------


def test_auto_approved_registrations_count_toward_the_early_indicator(clients: Clients) -> None:
    run_clocks(clients, "2026-12-02")
    partner = clients.enrol()
    for n in range(10):
        assert register(clients, partner, n)["status"] == "approved"

    certified = eventually(
        lambda: (s := standing(clients, partner))["tiers"]["sell"] == "certified" and s
    )
    assert sell(certified)["metrics"]["approved_registrations"] == "10"
    (promotion,) = [c for c in tier_changes(clients, partner) if c["tier"] == "certified"]
    assert promotion["effective_on"] == day("2026-12-02").isoformat()
    assert promotion["metrics"]["approved_registrations"] in ("10", 10)


# --- 2. one program time: tiering and commissions date facts as registration does -------------


def test_a_contract_signed_with_the_clocks_ahead_is_dated_by_the_program_day(
    clients: Clients,
) -> None:
    run_clocks(clients, "2027-04-03")
    seller, referrer = clients.enrol(), clients.enrol(legal_name="Contoso", motions=[])

    bought = sign(
        clients, registration=register(clients, seller, 0), mrr="3000.00", start=day("2027-04-03")
    )  # 36,000 a year: certified
    referred = sign(
        clients,
        registration=register(clients, referrer, 1, motion="refer"),
        mrr="1000.00",
        start=day("2027-04-03"),
    )

    eventually(lambda: standing(clients, seller)["tiers"]["sell"] == "certified")
    changes = tier_changes(clients, seller)
    assert [(c["tier"], c["effective_on"]) for c in changes] == [
        ("registered", day("2027-04-03").isoformat()),
        ("certified", day("2027-04-03").isoformat()),
    ]

    bonus = eventually(
        lambda: [x for x in clients.ledger(contract_id=bought) if x["rule"] == "new_business_bonus"]
    )
    assert [(x["earned_in"], x["amount"]["amount"]) for x in bonus] == [
        (period("2027-04"), "1800.00")  # 5% of 36,000.00
    ]
    fee = eventually(lambda: clients.ledger(contract_id=referred))
    assert [(x["rule"], x["earned_in"], x["amount"]["amount"]) for x in fee] == [
        ("referral_fee", period("2027-04"), "1200.00")  # 10% of 12,000.00
    ]
    (won,) = logged(clients.commissions, referrer, "ReferralWon")
    assert won["data"]["won_on"] == day("2027-04-03").isoformat()

    registered = clients.registration.get(
        f"/v1/registrations/{register(clients, seller, 2)['registration_id']}", headers=CRM
    ).json()
    assert registered["protected_until"] == (day("2027-04-03") + timedelta(days=90)).isoformat()


def demoted_on_april_first(clients: Clients) -> str:
    """Issue 17, item 3's partner: certified by a $30,000 contract that was cancelled effective
    2026-12-11, so one full quarter below the threshold: demoted at the 2027-04-01 review. The
    clocks stand on 2027-04-03 when it returns."""
    run_clocks(clients, "2026-12-02")
    partner = clients.enrol()
    certifying = sign(
        clients, registration=register(clients, partner, 0), mrr="2500.00", start=day("2026-12-02")
    )
    eventually(lambda: standing(clients, partner)["tiers"]["sell"] == "certified")

    run_clocks(clients, "2026-12-11")
    cancel(clients, certifying, day("2026-12-11"))
    eventually(lambda: sell(standing(clients, partner))["reached"] == "registered")

    run_clocks(clients, "2027-04-03")
    demoted = standing(clients, partner)
    assert demoted["tiers"]["sell"] == "registered"
    assert [(c["tier"], c["effective_on"], c["reason"]) for c in tier_changes(clients, partner)][
        -1
    ][:2] == ("registered", day("2027-04-01").isoformat())
    return partner


def test_a_demoted_partner_is_not_promoted_again_by_a_small_contract_and_locks_five_percent(
    clients: Clients,
) -> None:
    partner = demoted_on_april_first(clients)
    changes_before = len(tier_changes(clients, partner))

    small = sign(
        clients, registration=register(clients, partner, 1), mrr="200.00", start=day("2027-04-03")
    )  # $2,400
    eventually(lambda: sell(standing(clients, partner))["metrics"]["first_year_value"] == "2400.00")
    assert standing(clients, partner)["tiers"]["sell"] == "registered"

    next_customer = sign(
        clients, registration=register(clients, partner, 2), mrr="300.00", start=day("2027-04-03")
    )
    eventually(lambda: sell(standing(clients, partner))["metrics"]["first_year_value"] == "6000.00")
    assert standing(clients, partner)["tiers"]["sell"] == "registered"
    assert len(tier_changes(clients, partner)) == changes_before

    run_clocks(clients, "2027-04-04")  # the first month of both contracts begins
    margin = eventually(
        lambda: [
            x for x in clients.ledger(contract_id=next_customer) if x["rule"] == "resale_margin"
        ]
    )
    assert [(x["rate"], x["amount"]["amount"], x["earned_in"]) for x in margin] == [
        ("0.05", "15.00", period("2027-04"))  # 5% of 300.00, not 10% (30.00)
    ]
    small_margin = eventually(
        lambda: [x for x in clients.ledger(contract_id=small) if x["rule"] == "resale_margin"]
    )
    assert [(x["rate"], x["amount"]["amount"]) for x in small_margin] == [("0.05", "10.00")]
    account = clients.commissions.get(f"/v1/partners/{partner}/account", headers=ADMIN).json()
    locked = {r["customer_key"]: (r["tier"], r["rate"]) for r in account["locked_rates"]}
    assert locked[f"domain:{COMPANIES[2][1]}"] == ("registered", "0.05")


ELECTED_REFERRALS = [("1201.50", "36.04"), ("2000.00", "60.00")]
"""The 6th and 7th referrals of the issue (fees of 1,441.80 and 2,400.00 if wrongly paid once):
MRR, and 3% of it each month (36.045 rounds half-even to 36.04)."""


@pytest.mark.parametrize("ahead", ["two minutes", "months"])
def test_referrals_after_a_premium_associate_election_earn_three_percent_a_month(
    clients: Clients, ahead: str
) -> None:
    if ahead == "two minutes":  # as the issue found it: the clocks just ahead of the wall clock
        present = datetime.now(UTC) + timedelta(minutes=2)
        run_clocks(clients, present)
    else:
        run_clocks(clients, "2027-04-03")
        present = datetime.combine(day("2027-04-03"), datetime.min.time(), UTC) + timedelta(
            hours=12
        )
    today = present.date()
    partner = clients.enrol(motions=[])
    own = bearer(Role.PARTNER, partner_id=UUID(partner))

    for n in range(5):
        sign(
            clients,
            registration=register(clients, partner, n, motion="refer"),
            mrr="1000.00",
            start=today,
        )
    eventually(
        lambda: (
            clients.commissions.get(f"/v1/partners/{partner}/account", headers=own).json()[
                "won_referrals_in_window"
            ]
            == 5
        )
    )
    elected = clients.commissions.post(f"/v1/partners/{partner}/premium-associate", headers=own)
    assert elected.status_code == 201, elected.text

    later = [
        sign(
            clients,
            registration=register(clients, partner, 5 + i, motion="refer"),
            mrr=mrr,
            start=today,
        )
        for i, (mrr, _) in enumerate(ELECTED_REFERRALS)
    ]
    run_clocks(clients, present + timedelta(days=1))  # the first month of each begins
    for contract_id, (_, monthly) in zip(later, ELECTED_REFERRALS, strict=True):

        def lines_of(c: str = contract_id) -> list[dict[str, Any]]:
            return clients.ledger(contract_id=c)

        lines = eventually(lines_of)
        assert [(x["rule"], x["rate"], x["amount"]["amount"]) for x in lines] == [
            ("premium_associate", "0.03", monthly)
        ]


# --- 3. a late report after a cancellation ---------------------------------------------------


def test_a_late_report_does_not_promote_with_a_cancelled_contract(clients: Clients) -> None:
    partner = demoted_on_april_first(clients)
    changes_before = tier_changes(clients, partner)

    sign(clients, partner=partner, customer=1, mrr="100.00", start=day("2026-12-03"))
    reported = eventually(
        lambda: (
            (s := standing(clients, partner))["standing"]
            and sell(s)["metrics"]["first_year_value"] == "1200.00"
            and s
        )
    )
    assert reported["tiers"]["sell"] == "registered"
    changes = tier_changes(clients, partner)
    assert changes == changes_before
    assert all(Decimal(str(c["metrics"].get("first_year_value", 0))) != 31200 for c in changes)


# --- 4. influencers earn nothing -------------------------------------------------------------


def test_an_influencers_contract_is_recorded_and_earns_nothing(clients: Clients) -> None:
    run_clocks(clients, "2026-12-02")
    influencer = clients.enrol(
        legal_name="State University", function="influencer", category="academia", motions=[]
    )
    analyst = clients.enrol(
        legal_name="Analyst Firm", function="influencer", category="industry_analyst"
    )  # with a sell addendum, even
    seller = clients.enrol()
    for partner, motion in ((influencer, "refer"), (analyst, "sell"), (analyst, "refer")):
        refused = clients.registration.post(
            "/v1/registrations",
            json={
                "partner_id": partner,
                "customer": {"name": "Globex", "country": "US", "domain": "globex.com"},
                "product_line": "cloud",
                "motion": motion,
                "estimated_value": {"amount": "12000.00", "currency": "USD"},
                "expected_close": day("2027-03-31").isoformat(),
            },
            headers=CRM,
        )
        assert refused.status_code == 422, refused.text  # influencers cannot register deals
        assert "influencer" in refused.json()["detail"]

    influenced = sign(
        clients, partner=influencer, customer=0, mrr="1000.00", start=day("2026-12-02")
    )
    recorded = clients.registration.get(f"/v1/contracts/{influenced}", headers=CRM)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["partner_id"] == influencer
    sold = sign(clients, partner=seller, customer=1, mrr="1000.00", start=day("2026-12-02"))

    run_clocks(clients, "2027-03-03")  # four months begin, three close
    eventually(
        lambda: (
            len([x for x in clients.ledger(contract_id=sold) if x["rule"] == "resale_margin"]) == 4
        )
    )
    commissions_settled(clients)
    assert clients.ledger(contract_id=influenced) == []
    assert clients.ledger(partner_id=influencer) == []
    statements = clients.commissions.get(
        "/v1/statements", params={"partner_id": influencer}, headers=FINANCE
    ).json()["statements"]
    assert all(Decimal(a["amount"]) == 0 for s in statements for a in s.get("totals", []))
    account = clients.commissions.get(f"/v1/partners/{influencer}/account", headers=ADMIN)
    if account.status_code == 200:
        assert account.json()["locked_rates"] == []
