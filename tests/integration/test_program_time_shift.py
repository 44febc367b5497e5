"""Issue 17's acceptance: a whole scenario run with every clock one year ahead of the wall clock
gives the same statements and tiers as the same scenario run at the wall date, shifted by a year.

The scenario is one function of its first day. Its first run starts at the wall date: the
clocks, which stand at the wall clock, are run to the first day of the next month (day 0).
Its second run, on a database of its own, first runs every clock to day 0 one year later. Every
day of the scenario is day 0 plus whole months and at most 27 days (no 29th to 31st), and no
window it depends on ends near February's end, so a leap year in either run changes nothing.
Then the two answers are compared with the second run's dates and months moved back a year.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import psycopg
import pytest
from dateutil.relativedelta import relativedelta

from shared.auth import Role
from shared.database import with_database
from tests.conftest import bearer, eventually
from tests.integration.conftest import Clients, running_services

pytestmark = pytest.mark.postgres

CRM, ADMIN, FINANCE = bearer(Role.CRM), bearer(Role.ADMIN), bearer(Role.FINANCE)
AUDITOR, MANAGER = bearer(Role.AUDITOR), bearer(Role.CHANNEL_MANAGER)


@pytest.fixture
def second_settings_for(
    postgres_admin_url: str, settings_for: Callable[..., Any]
) -> Iterator[Callable[..., Any]]:
    """Settings as ``settings_for`` makes them, on a second fresh database."""
    name = f"dealreg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(postgres_admin_url, name)

    def make(*args: Any, **overrides: Any) -> Any:
        return settings_for(*args, **{"database_url": url, **overrides})

    yield make
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the scenario ---------------------------------------------------------------------------


class Program:
    """The three services, driven over HTTP from a scenario's day 0."""

    def __init__(self, clients: Clients, day0: date) -> None:
        self.clients = clients
        self.day0 = day0
        self.partners: dict[str, str] = {}

    def day(self, months: int, days: int = 0) -> date:
        assert 0 <= days <= 27, "no 29th to 31st: the same calendar in every year"
        return self.day0 + relativedelta(months=months, days=days)

    def run_clocks(self, months: int, days: int = 0) -> None:
        self.clients.run_clocks(datetime.combine(self.day(months, days), time(9), UTC))

    def enrol(self, name: str, **fields: Any) -> str:
        self.partners[name] = self.clients.enrol(legal_name=name, **fields)
        return self.partners[name]

    def register(self, partner: str, customer: str, *, motion: str = "sell") -> str:
        body = {
            "partner_id": self.partners[partner],
            "customer": {"name": customer.title(), "country": "US", "domain": f"{customer}.com"},
            "product_line": "cloud",
            "motion": motion,
            "estimated_value": {"amount": "12000.00", "currency": "USD"},
            "expected_close": self.day(11).isoformat(),
        }
        response = self.clients.registration.post("/v1/registrations", json=body, headers=CRM)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "approved", response.text
        registration_id: str = response.json()["registration_id"]
        return registration_id

    def sign(
        self,
        mrr: str,
        start: date,
        *,
        registration: str | None = None,
        partner: str | None = None,
        customer: str | None = None,
    ) -> str:
        return self.clients.sign(
            start=start,
            mrr=mrr,
            registration_id=registration,
            partner_id=self.partners[partner] if partner else None,
            customer=(
                {"name": customer.title(), "country": "US", "domain": f"{customer}.com"}
                if customer
                else None
            ),
        )

    def metric(self, partner: str, motion: str, metric: str) -> str | None:
        found = self.clients.tiering.get(f"/v1/partners/{self.partners[partner]}", headers=ADMIN)
        assert found.status_code == 200, found.text
        for standing in found.json()["standing"]:
            if standing["motion"] == motion:
                value: str | None = standing["metrics"].get(metric)
                return value
        return None

    def taken_in(self, partner: str, motion: str, metric: str, value: str) -> None:
        """Tiering has taken the fact in (its standing is read from its log)."""
        eventually(lambda: self.metric(partner, motion, metric) == value)


TEN_CUSTOMERS = [
    "acme",
    "zenith",
    "orbital",
    "quantum",
    "harbor",
    "meridian",
    "pinnacle",
    "cascade",
    "sterling",
    "evergreen",
]


def scenario(clients: Clients, day0: date) -> None:
    """Four partners over nine months: a seller promoted by a contract that starts after it is
    reported, a late report, a cancellation within the clawback window, a demotion after a
    quarter below; a seller certified by ten approved registrations; a referrer; an influencer."""
    p = Program(clients, day0)
    p.run_clocks(0)
    p.enrol("Northwind", regions=["EMEA"])
    p.enrol("Contoso", regions=["NA"])
    p.enrol("Fabrikam", motions=[])
    p.enrol("State University", function="influencer", category="academia", motions=[])

    # day 0: a $30,000 contract that starts on day 2; ten registrations; a referral; an influencer
    first = p.sign("2500.00", p.day(0, 2), registration=p.register("Northwind", "globex"))
    for customer in TEN_CUSTOMERS:
        p.register("Contoso", customer)
    p.taken_in("Contoso", "sell", "approved_registrations", "10")
    p.sign("1000.00", p.day(0), registration=p.register("Fabrikam", "initech", motion="refer"))
    p.sign("500.00", p.day(0), partner="State University", customer="hooli")

    # month 1, day 4: a new customer at the certified rate; a contract reported late
    p.run_clocks(1, 4)
    p.sign("400.00", p.day(1, 5), registration=p.register("Northwind", "umbrella"))
    p.sign("100.00", p.day(0, 10), partner="Northwind", customer="soylent")
    p.taken_in("Northwind", "sell", "first_year_value", "31200.00")  # the next one starts later

    # month 2, day 14: the $30,000 contract cancelled from day 10 (within 90 days of its start);
    # a second referral
    p.run_clocks(2, 14)
    cancelled = clients.registration.post(
        f"/v1/contracts/{first}/cancellation",
        json={"effective_on": p.day(2, 10).isoformat(), "reason": "customer left"},
        headers=CRM,
    )
    assert cancelled.status_code in (200, 201), cancelled.text
    p.sign("2000.00", p.day(2, 14), registration=p.register("Fabrikam", "tyrell", motion="refer"))
    p.taken_in("Northwind", "sell", "first_year_value", "6000.00")

    # month 8, day 2: a full quarter below has ended, whatever month day 0 is: demoted at the
    # review; a new customer at the registered rate
    p.run_clocks(8, 2)
    p.sign("300.00", p.day(8, 2), registration=p.register("Northwind", "wonka"))
    p.taken_in("Northwind", "sell", "first_year_value", "9600.00")
    p.run_clocks(9, 2)


# --- what a run ends with ---------------------------------------------------------------------

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DAYS = re.compile(r"\b\d+ days\b")
"""Days between two dates (a cancellation after a start) differ when one run crosses a 29
February; the rule's window in days does not."""
_DATE = re.compile(r"\b(\d{4})-(\d{2})(-\d{2})?\b")


def shifted(value: Any, years: int) -> Any:
    """Every date and month in a value moved by whole years; ids left out (each run has its
    own)."""
    if isinstance(value, dict):
        return {k: shifted(v, years) for k, v in value.items()}
    if isinstance(value, list):
        return [shifted(v, years) for v in value]
    if isinstance(value, str):
        text = _ID.sub("<id>", value)
        return _DATE.sub(lambda m: f"{int(m[1]) + years:04d}-{m[2]}{m[3] or ''}", text)
    return value


def outcome(clients: Clients) -> dict[str, Any]:
    """Each partner's tiers, standing and tier changes, and every statement with its lines,
    keyed by the partner's name."""
    ran = clients.commissions.get("/v1/admin/clock", headers=ADMIN).json()["now"]
    for _ in range(2):  # a run to where it stands brings its followers (and ledger) up to date
        clients.commissions.post("/v1/admin/clock", json={"until": ran}, headers=ADMIN)
    partners = clients.tiering.get("/v1/partners", headers=ADMIN).json()["partners"]
    result: dict[str, Any] = {}
    for partner in partners:
        partner_id, name = partner["partner_id"], partner["legal_name"]
        standing = clients.tiering.get(f"/v1/partners/{partner_id}", headers=ADMIN).json()
        changes = [
            {
                k: e["data"][k]
                for k in ("motion", "previous_tier", "tier", "effective_on", "reason", "metrics")
            }
            for e in _log(clients, partner_id)
            if e["type"].endswith("TierChanged")
        ]
        statements = []
        listed = clients.commissions.get(
            "/v1/statements", params={"partner_id": partner_id, "limit": 500}, headers=FINANCE
        ).json()["statements"]
        for summary in sorted(listed, key=lambda s: s["period"]):
            detail = clients.commissions.get(
                f"/v1/statements/{partner_id}/{summary['period']}", headers=FINANCE
            ).json()
            statements.append(
                {
                    **{k: detail[k] for k in ("period", "status", "lines", "totals", "payable")},
                    **{k: detail[k] for k in ("carried_in", "carried_out")},
                    "line_items": sorted(
                        (
                            {
                                "rule": line["rule"],
                                "rate": line["rate"],
                                "base": line["base"],
                                "amount": line["amount"],
                                "earned_in": line["earned_in"],
                                "customer_key": line["customer_key"],
                                "corrects": line["corrects"] is not None,
                                "explanation": _DAYS.sub("N days", line["explanation"]),
                            }
                            for line in detail["line_items"]
                        ),
                        key=lambda line: json.dumps(line, sort_keys=True),
                    ),
                }
            )
        result[name] = {
            "tiers": standing["tiers"],
            "as_of": standing["as_of"],
            "standing": standing["standing"],
            "tier_changes": changes,
            "statements": statements,
        }
    return result


def _log(clients: Clients, stream_id: str) -> list[dict[str, Any]]:
    found, after = [], 0
    while True:
        page = clients.tiering.get(
            "/v1/events", params={"after": after, "limit": 1000}, headers=AUDITOR
        ).json()
        found += [e for e in page["events"] if e["stream_id"] == stream_id]
        if not page["events"]:
            return found
        after = page["next_after"]


def run(clients: Clients, day0: date) -> dict[str, Any]:
    scenario(clients, day0)
    return outcome(clients)


def test_a_year_ahead_gives_the_same_statements_and_tiers_a_year_later(
    settings_for: Callable[..., Any], second_settings_for: Callable[..., Any]
) -> None:
    today = datetime.now(UTC).date()
    day0 = (today + relativedelta(months=1)).replace(day=1)
    with running_services(settings_for) as clients:
        at_the_wall_date = run(clients, day0)
    with running_services(second_settings_for) as clients:
        a_year_ahead = run(clients, day0 + relativedelta(years=1))

    northwind = at_the_wall_date["Northwind"]
    assert [
        (c["tier"], c["reason"]) for c in northwind["tier_changes"] if c["motion"] == "sell"
    ] == [
        ("registered", "enrolled"),
        ("certified", "promotion"),
        ("registered", "demotion"),
    ]
    assert at_the_wall_date["Contoso"]["tiers"]["sell"] == "certified"
    assert all(not s["line_items"] for s in at_the_wall_date["State University"]["statements"])
    rules = {
        line["rule"]
        for s in northwind["statements"] + at_the_wall_date["Fabrikam"]["statements"]
        for line in s["line_items"]
    }
    assert {"resale_margin", "new_business_bonus", "clawback", "referral_fee"} <= rules

    assert shifted(a_year_ahead, -1) == shifted(at_the_wall_date, 0)
