"""Tiering over HTTP: contracts signed at registration promote a partner, and the TierChanged
reaches registration and commissions."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from shared.auth import Role
from tests.conftest import bearer, eventually, registration_body
from tests.integration.conftest import Clients, sell_certified_from

pytestmark = pytest.mark.postgres

CRM, ADMIN = bearer(Role.CRM), bearer(Role.ADMIN)


def standing(clients: Clients, partner: str, **params: str) -> dict[str, Any]:
    response = clients.tiering.get(f"/v1/partners/{partner}", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def motion(result: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [m for m in result["standing"] if m["motion"] == name]
    return found


def sign(clients: Clients, registration_id: str, mrr: str, start: str) -> None:
    response = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registration_id,
            "start_date": start,
            "term_months": 12,
            "mrr": {"amount": mrr, "currency": "USD"},
        },
        headers=CRM,
    )
    assert response.status_code == 201, response.text


def test_contracts_signed_at_registration_promote_the_partner_everywhere(
    clients: Clients, database_url: str
) -> None:
    partner = clients.enrol(regions=["EMEA", "NA"])
    fresh = standing(clients, partner)
    assert fresh["tiers"] == {"refer": "associate", "sell": "registered"}
    sell = motion(fresh, "sell")
    assert sell["next_tier"] == "certified"
    assert {s["metric"] for way in sell["needs"] for s in way} == {
        "first_year_value",
        "approved_registrations",
    }

    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=CRM
    )
    assert registered.status_code == 201, registered.text
    sign(clients, registered.json()["registration_id"], "10000.00", "2026-01-01")

    promoted = eventually(
        lambda: (s := standing(clients, partner))["tiers"]["sell"] == "premier_certified" and s
    )
    sell = motion(promoted, "sell")
    assert sell["metrics"]["first_year_value"] == "120000.00"
    assert sell["next_tier"] == "alliance"

    def movements() -> list[tuple[str, str, str]]:
        found = clients.tiering.get(
            "/v1/tiers/movements", params={"partner_id": partner}, headers=ADMIN
        ).json()["movements"]
        return [(m["motion"], m["tier"], m["reason"]) for m in found]

    assert eventually(lambda: ("sell", "premier_certified", "promotion") in movements())

    def tier_at(table: str) -> str | None:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                f"SELECT tier FROM {table} WHERE partner_id = %s AND motion = 'sell'",  # noqa: S608
                (partner,),
            ).fetchone()
        return row[0] if row else None

    assert eventually(lambda: tier_at("commissions_partner_tiers") == "premier_certified")

    def registration_sees() -> bool:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT tiers->>'sell' FROM registration_partners WHERE partner_id = %s",
                (partner,),
            ).fetchone()
        return row is not None and row[0] == "premier_certified"

    assert eventually(registration_sees)


def test_a_partner_token_sees_only_its_own_standing(clients: Clients) -> None:
    mine, theirs = clients.enrol(), clients.enrol(legal_name="Contoso")
    token = bearer(Role.PARTNER, partner_id=mine)  # type: ignore[arg-type]
    assert clients.tiering.get(f"/v1/partners/{mine}", headers=token).status_code == 200
    other = clients.tiering.get(f"/v1/partners/{theirs}", headers=token)
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"


def run_tiering_clock(clients: Clients, until: str) -> None:
    """Tiering's clock to an instant, and its decisions taken in by every projection."""
    response = clients.tiering.post("/v1/admin/clock", json={"until": until}, headers=ADMIN)
    assert response.status_code == 200, response.text
    clients.settle()


LOWER_CERTIFIED = sell_certified_from(10000)


def twelve_thousand_a_year_then_certified_from_ten_on_march_first(clients: Clients) -> str:
    """A partner selling 12,000 a year since January 2027 (registered), and a policy version
    from 1 March 2027 that makes 10,000 enough for certified."""
    run_tiering_clock(clients, "2027-02-01T00:00:00Z")
    partner = clients.enrol()
    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=CRM
    )
    sign(clients, registered.json()["registration_id"], "1000.00", "2027-01-15")  # 12,000 a year
    eventually(
        lambda: (
            motion(standing(clients, partner), "sell")["metrics"]["first_year_value"] == "12000.00"
        )
    )

    adopted = clients.tiering.post(
        "/v1/program/policy",
        params={"effective_on": "2027-03-01", "note": "certified from 10k"},
        content=LOWER_CERTIFIED,
        headers={**ADMIN, "content-type": "application/yaml"},
    )
    assert adopted.status_code == 201, adopted.text
    assert adopted.json()["version"] == 2
    return partner


def test_a_policy_with_a_future_effective_date_changes_nothing_before_it(
    clients: Clients,
) -> None:
    partner = twelve_thousand_a_year_then_certified_from_ten_on_march_first(clients)

    run_tiering_clock(clients, "2027-02-28T23:00:00Z")
    before = standing(clients, partner)
    assert (before["tiers"]["sell"], before["policy_version"]) == ("registered", 1)

    run_tiering_clock(clients, "2027-03-01T00:00:00Z")
    after = standing(clients, partner)
    assert (after["tiers"]["sell"], after["policy_version"]) == ("certified", 2)

    def latest_movement() -> tuple[str, str, str]:
        movements = clients.tiering.get(
            "/v1/tiers/movements", params={"partner_id": partner, "motion": "sell"}, headers=ADMIN
        ).json()["movements"]
        return [(m["tier"], m["effective_on"], m["reason"]) for m in movements][-1]

    assert eventually(lambda: latest_movement()[0] == "certified")
    assert latest_movement() == ("certified", "2027-03-01", "promotion")
    versions = clients.tiering.get("/v1/program/policy", headers=ADMIN).json()
    assert versions["in_force"]["version"] == 2
    document = clients.tiering.get(
        "/v1/program/policy/2", headers={**ADMIN, "accept": "application/yaml"}
    )
    assert document.headers["content-type"].startswith("application/yaml")
    assert "first_year_value: '10000'" in document.text


def test_one_clock_run_across_a_policy_change_and_a_quarter_start_decides_both(
    clients: Clients,
) -> None:
    partner = twelve_thousand_a_year_then_certified_from_ten_on_march_first(clients)

    run_tiering_clock(clients, "2027-04-02T00:00:00Z")  # the policy's day, then a quarter's
    assert standing(clients, partner)["tiers"]["sell"] == "certified"

    def reviews() -> list[str]:  # the history is a projection: wait for the review to be in it
        events = clients.tiering.get(
            f"/v1/history/{partner}", params={"limit": "1000"}, headers=ADMIN
        ).json()["events"]
        return [e["data"]["review_on"] for e in events if e["type"].endswith("QuarterReviewed")]

    assert eventually(reviews) == ["2027-04-01"]


@pytest.mark.parametrize(
    ("content_type", "body", "params", "status", "says"),
    [
        ("text/plain", "x", {"effective_on": "2030-01-01"}, 415, "application/yaml"),
        ("application/yaml", "tiers: [", {"effective_on": "2030-01-01"}, 422, "not a readable"),
        (
            "application/json",
            '{"tiers": {"motions": {}}}',
            {"effective_on": "2030-01-01"},
            422,
            "missing",
        ),
        ("application/yaml", LOWER_CERTIFIED, {"effective_on": "2001-01-01"}, 422, "in the past"),
        ("application/yaml", LOWER_CERTIFIED, {}, 422, "effective_on"),
    ],
)
def test_a_policy_that_cannot_be_taken_is_refused_and_changes_nothing(
    clients: Clients,
    content_type: str,
    body: str,
    params: dict[str, str],
    status: int,
    says: str,
) -> None:
    refused = clients.tiering.post(
        "/v1/program/policy",
        params=params,
        content=body,
        headers={**ADMIN, "content-type": content_type},
    )
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert says in refused.text
    assert len(clients.tiering.get("/v1/program/policy", headers=ADMIN).json()["versions"]) == 1
    manager = clients.tiering.post(
        "/v1/program/policy",
        params={"effective_on": "2030-01-01"},
        content=LOWER_CERTIFIED,
        headers={**bearer(Role.CHANNEL_MANAGER), "content-type": "application/yaml"},
    )
    assert manager.status_code == 403


def test_amounts_in_other_currencies_count_once_the_program_publishes_their_rate(
    clients: Clients,
) -> None:
    partner = clients.enrol()
    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=CRM
    )
    response = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registered.json()["registration_id"],
            "start_date": "2026-01-01",
            "term_months": 12,
            "mrr": {"amount": "2000.00", "currency": "EUR"},
        },
        headers=CRM,
    )
    assert response.status_code == 201, response.text
    waiting = eventually(
        lambda: motion(s := standing(clients, partner), "sell")["unconverted"] and s
    )
    assert motion(waiting, "sell")["unconverted"] == [{"amount": "24000.00", "currency": "EUR"}]
    assert waiting["tiers"]["sell"] == "registered"

    published = clients.tiering.post(
        "/v1/program/rates",
        json={"month": "2025-12-01", "rates": {"EUR": "1.10"}},
        headers=bearer(Role.FINANCE),
    )
    assert published.status_code == 201, published.text
    converted = standing(clients, partner)
    assert motion(converted, "sell")["metrics"]["first_year_value"] == "26400.0000"
    assert converted["tiers"]["sell"] == "certified"  # promoted when the rate made it count

    bad = clients.tiering.post(
        "/v1/program/rates", json={"month": "2026-01-01", "rates": {"EUR": "0"}}, headers=ADMIN
    )
    assert bad.status_code == 422
    assert "rates.EUR" in bad.json()["detail"]


def test_achievements_are_recorded_with_who_and_promote_at_once(clients: Clients) -> None:
    partner = clients.enrol(motions=["service", "build"])
    manager = bearer(Role.CHANNEL_MANAGER)
    base = f"/v1/partners/{partner}"
    for n in range(2):
        response = clients.tiering.post(
            f"{base}/certifications",
            json={
                "individual": f"Engineer {n}",
                "certification": "deployment",
                "certified_on": "2026-01-05",
            },
            headers=manager,
        )
        assert response.status_code == 200, response.text
    assert response.json()["tiers"]["service"] == "registered"
    done = clients.tiering.post(
        f"{base}/projects",
        json={"project": "Rollout", "completed_on": "2026-02-01"},
        headers=manager,
    )
    assert done.json()["tiers"]["service"] == "certified"
    integrated = clients.tiering.post(
        f"{base}/integrations", json={"integration": "Connector"}, headers=manager
    )
    assert integrated.json()["tiers"]["build"] == "certified"

    again = clients.tiering.post(f"{base}/projects", json={"project": "Rollout"}, headers=manager)
    assert again.status_code == 409  # it conflicts with the partner's record
    assert again.headers["content-type"] == "application/problem+json"
    as_partner = clients.tiering.post(
        f"{base}/training",
        json={"track": "services", "level": 201},
        headers=bearer(Role.PARTNER, partner_id=partner),  # type: ignore[arg-type]
    )
    assert as_partner.status_code == 403
    bad_level = clients.tiering.post(
        f"{base}/training", json={"track": "services", "level": 150}, headers=manager
    )
    assert bad_level.status_code == 422

    events = clients.tiering.get("/v1/events", params={"limit": 100}, headers=bearer(Role.AUDITOR))
    recorded = [e for e in events.json()["events"] if e["type"].endswith("IndividualCertified")]
    assert {e["data"]["recorded_by"] for e in recorded} == {"test-channel_manager"}


def test_addenda_and_offboarding_reach_registration(clients: Clients) -> None:
    partner = clients.enrol(motions=[])
    manager = bearer(Role.CHANNEL_MANAGER)
    refused = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=CRM
    )
    assert refused.status_code == 422
    assert "sell" in refused.json()["detail"]

    signed = clients.tiering.post(
        f"/v1/partners/{partner}/addenda", json={"motion": "sell"}, headers=manager
    )
    assert signed.status_code == 200, signed.text
    assert signed.json()["tiers"] == {"refer": "associate", "sell": "registered"}
    twice = clients.tiering.post(
        f"/v1/partners/{partner}/addenda", json={"motion": "sell"}, headers=manager
    )
    assert twice.status_code == 409  # it conflicts with the partner's record
    # at once: registration catches up with tiering before it refuses for want of an addendum
    accepted = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=CRM
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["partner_id"] == partner

    gone = clients.tiering.post(
        f"/v1/partners/{partner}/offboarding", json={"reason": "contract ended"}, headers=manager
    )
    assert gone.status_code == 200, gone.text
    left = eventually(
        lambda: (
            (
                r := clients.registration.post(
                    "/v1/registrations",
                    json=registration_body(partner, domain="globex.com"),
                    headers=CRM,
                )
            ).status_code
            == 422
            and r
        )
    )
    assert "left the program" in left.json()["detail"]
    again = clients.tiering.post(
        f"/v1/partners/{partner}/addenda", json={"motion": "build"}, headers=manager
    )
    assert again.status_code == 409  # it conflicts with the partner's record
    assert "offboarded" in again.json()["detail"]


def test_demotion_after_a_full_quarter_below_and_non_performers_at_reviews(
    clients: Clients,
) -> None:
    for service in (clients.registration, clients.tiering, clients.commissions):
        ran = service.post("/v1/admin/clock", json={"until": "2030-12-01T00:00:00Z"}, headers=ADMIN)
        assert ran.status_code == 200, ran.text
    seller, idle = clients.enrol(), clients.enrol(legal_name="Idle Ltd")
    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(seller), headers=CRM
    )
    sign(clients, registered.json()["registration_id"], "3000.00", "2030-12-01")  # 36,000
    eventually(lambda: standing(clients, seller)["tiers"]["sell"] == "certified")

    def non_performers() -> set[str]:
        found = clients.tiering.get("/v1/tiers/non-performers", headers=ADMIN).json()
        return {p["partner_id"] for p in found["non_performers"]}

    run_tiering_clock(clients, "2031-10-01T00:00:00Z")  # reviews of 2031-01, -04, -07, -10
    assert standing(clients, seller)["tiers"]["sell"] == "certified"
    assert non_performers() == set()  # nobody a member for 12 months yet

    run_tiering_clock(clients, "2032-01-01T00:00:00Z")  # the contract left the window: grace
    held = standing(clients, seller)
    assert held["tiers"]["sell"] == "certified"
    assert motion(held, "sell")["reached"] == "registered"
    # A member for 12 months with no registration and no revenue in the window; the seller's
    # customer paid until 2031-11-30.
    assert non_performers() == {idle}

    run_tiering_clock(clients, "2032-04-01T00:00:00Z")  # still below: demoted
    demoted = standing(clients, seller)
    assert demoted["tiers"]["sell"] == "registered"


def test_five_won_referrals_make_a_premium_associate(clients: Clients) -> None:
    partner = clients.enrol(motions=[])
    for n in range(5):
        body = {**registration_body(partner, domain=f"referred{n}.com"), "motion": "refer"}
        referred = clients.registration.post("/v1/registrations", json=body, headers=CRM)
        assert referred.status_code == 201, referred.text
        sign(clients, referred.json()["registration_id"], "100.00", "2026-06-01")
        expected = "premium_associate" if n == 4 else "associate"
        reached = eventually(
            lambda n=n: (
                motion(s := standing(clients, partner), "refer")["metrics"]["won_referrals"]
                == str(n + 1)
                and s
            )
        )
        assert reached["tiers"]["refer"] == expected
    assert "sell" not in reached["tiers"]  # a referral books no resale


def test_a_second_region_makes_a_premier_of_a_partner_selling_enough(clients: Clients) -> None:
    partner = clients.enrol()
    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=CRM
    )
    sign(clients, registered.json()["registration_id"], "9000.00", "2026-06-01")  # 108,000
    eventually(lambda: standing(clients, partner)["tiers"]["sell"] == "certified")
    manager = bearer(Role.CHANNEL_MANAGER)
    widened = clients.tiering.put(
        f"/v1/partners/{partner}/regions", json={"regions": ["EMEA", "NA"]}, headers=manager
    )
    assert widened.status_code == 200, widened.text
    assert widened.json()["regions"] == ["EMEA", "NA"]
    assert widened.json()["tiers"]["sell"] == "premier_certified"
    same = clients.tiering.put(
        f"/v1/partners/{partner}/regions", json={"regions": ["NA", "EMEA"]}, headers=manager
    )
    assert same.status_code == 409  # it conflicts with the partner's record
