"""What-if (issue 8): the history replayed under a draft policy, over HTTP and in process, on
the three services. The baseline (the live policy) must reproduce the live tiers and statements,
or the differences would mean nothing; nothing may be written."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import typer
from dateutil.relativedelta import relativedelta
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dealreg.whatif import what_if as what_if_command
from services.commissions.domain.statements import Statement
from services.commissions.whatif import CommissionsWhatIf
from services.tiering.api.whatif import commissions_client
from services.tiering.domain.partners import Partner
from services.tiering.whatif import TieringWhatIf
from shared.auth import Role
from shared.policy import default_policy, parse_policy
from shared.runtime import ServiceRuntime
from shared.whatif import DraftPolicy, notifications
from tests.conftest import bearer, eventually
from tests.integration.conftest import Clients, running_services, sell_certified_from

pytestmark = pytest.mark.postgres

CRM, ADMIN = bearer(Role.CRM), bearer(Role.ADMIN)

RAISED_CERTIFIED = sell_certified_from(50000)

LOWER_CERTIFIED = RAISED_CERTIFIED.replace("first_year_value: 50000", "first_year_value: 10000")


def today() -> date:
    return datetime.now(UTC).date()


def first_of_this_month() -> date:
    """Contracts start on it: started by the day they are reported, they count at once (one
    that starts later counts from its start, when tiering's clock gets there)."""
    return today().replace(day=1)


def next_quarter_start(day: date) -> date:
    return day.replace(day=1, month=(day.month - 1) // 3 * 3 + 1) + relativedelta(months=3)


def instant(day: date) -> str:
    return datetime.combine(day, time(0), UTC).isoformat()


def wire(clients: Clients) -> Clients:
    """Tiering reaches commissions in this process, not over the network."""
    clients.tiering.app.dependency_overrides[commissions_client] = lambda: clients.commissions  # type: ignore[attr-defined]
    return clients


@pytest.fixture
def wired(clients: Clients) -> Clients:
    return wire(clients)


def runtime(client: TestClient) -> ServiceRuntime:
    found: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    return found


def sell(
    clients: Clients,
    partner: str,
    customer: str,
    mrr: str,
    *,
    start: date,
    term_months: int = 12,
    currency: str = "USD",
    motion: str = "sell",
) -> str:
    """A deal registered for a new customer, and won."""
    domain = f"{customer.lower()}.example"
    registered = clients.registration.post(
        "/v1/registrations",
        json={
            "partner_id": partner,
            "customer": {"name": customer, "country": "DE", "domain": domain},
            "product_line": "cloud",
            "motion": motion,
            "estimated_value": {"amount": "1000.00", "currency": currency},
            "expected_close": start.isoformat(),
        },
        headers=CRM,
    )
    assert registered.status_code == 201, registered.text
    signed = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registered.json()["registration_id"],
            "start_date": start.isoformat(),
            "term_months": term_months,
            "mrr": {"amount": mrr, "currency": currency},
        },
        headers=CRM,
    )
    assert signed.status_code == 201, signed.text
    contract_id: str = signed.json()["contract_id"]
    return contract_id


def sell_tier(clients: Clients, partner: str) -> str:
    response = clients.tiering.get(f"/v1/partners/{partner}", headers=ADMIN)
    assert response.status_code == 200, response.text
    tier: str = response.json()["tiers"]["sell"]
    return tier


def run_clock(client: TestClient, until: date) -> None:
    response = client.post("/v1/admin/clock", json={"until": instant(until)}, headers=ADMIN)
    assert response.status_code == 200, response.text


def what_if(
    clients: Clients, draft: str, headers: dict[str, str] = ADMIN, **params: str
) -> httpx.Response:
    response: httpx.Response = clients.tiering.post(
        "/v1/program/what-if",
        params=params,
        content=draft,
        headers={**headers, "content-type": "application/yaml"},
    )
    return response


def settle(clients: Clients) -> None:
    """Every projection and every decision caught up with every log (its workers apply them)."""
    followers = [
        follower
        for client in (clients.registration, clients.tiering, clients.commissions)
        for follower in runtime(client).followers
    ]
    eventually(lambda: not any(follower.pending() for follower in followers))


def enrol_sellers(clients: Clients) -> dict[str, str]:
    """Partners with sell bookings of different sizes, under the default policy (certified from
    25,000 of first-year value, premier from 100,000 in two regions). Alpha, promoted by its
    first contract, signs a second one as a certified partner."""
    start = first_of_this_month()
    partners = {
        "Alpha": clients.enrol(legal_name="Alpha"),
        "Bravo": clients.enrol(legal_name="Bravo"),
        "Charlie": clients.enrol(legal_name="Charlie"),
        "Delta": clients.enrol(legal_name="Delta", regions=["EMEA", "NA"]),
        "Echo": clients.enrol(legal_name="Echo"),
    }
    for name, customer, mrr in (
        ("Alpha", "Aurora", "2500.00"),  # 30,000: certified; not from 50,000
        ("Bravo", "Borealis", "5000.00"),  # 60,000: certified either way
        ("Charlie", "Cirrus", "1000.00"),  # 12,000: registered either way
        ("Delta", "Draco", "10000.00"),  # 120,000 in two regions: premier either way
        ("Echo", "Equinox", "3500.00"),  # 42,000: certified; not from 50,000
    ):
        sell(clients, partners[name], customer, mrr, start=start)
    expected = {
        "Alpha": "certified",
        "Bravo": "certified",
        "Charlie": "registered",
        "Delta": "premier_certified",
        "Echo": "certified",
    }
    for name, tier in expected.items():
        eventually(partial(lambda n, t: sell_tier(clients, partners[n]) == t, name, tier))
    sell(clients, partners["Alpha"], "Andromeda", "1000.00", start=start)  # at 10%, live
    sell(clients, partners["Bravo"], "Betelgeuse", "1000.00", start=start)
    run_clock(clients.commissions, start + relativedelta(months=2))  # three months begun
    settle(clients)
    return partners


def test_a_raised_sell_threshold_lists_the_partners_below_it_and_their_statements(
    settings_for: Callable[..., Any],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with running_services(settings_for) as running:
        wired = wire(running)
        enrol_sellers(wired)
        report, table = asked_over_http(wired)

    # the same what-if from the command line, the services stopped: it reads the logs alone
    monkeypatch.setenv("DATABASE_URL", database_url)
    draft, output = tmp_path / "draft.yaml", tmp_path / "what-if.csv"
    draft.write_text(RAISED_CERTIFIED)
    command = typer.Typer()
    command.command()(what_if_command)
    printed = CliRunner().invoke(command, [str(draft)])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == report
    written_out = CliRunner().invoke(
        command, [str(draft), "--format", "csv", "--output", str(output)]
    )
    assert written_out.exit_code == 0, written_out.output
    assert output.read_text() == table
    draft.write_text("tiers: [")
    refused = CliRunner().invoke(command, [str(draft)])
    assert refused.exit_code == 2
    assert "not a readable" in refused.stderr


def asked_over_http(wired: Clients) -> tuple[dict[str, Any], str]:
    """The acceptance line over HTTP, as JSON and as CSV; both answers."""
    response = what_if(wired, RAISED_CERTIFIED)
    assert response.status_code == 200, response.text
    report = response.json()

    listed = {p["legal_name"]: p for p in report["partners"]}
    assert set(listed) == {"Alpha", "Echo"}  # between 25,000 and 50,000
    for name in ("Alpha", "Echo"):
        (sell_motion,) = listed[name]["tiers"]
        assert sell_motion["motion"] == "sell"
        assert (sell_motion["baseline"], sell_motion["draft"]) == ("certified", "registered")
        assert sell_motion["direction"] == "lower"
        assert [
            (c["run"], c["previous_tier"], c["tier"], c["reason"], c["effective_on"])
            for c in sell_motion["changes"]
        ] == [("baseline", "registered", "certified", "promotion", today().isoformat())]
    assert listed["Echo"]["statements"] == []  # it signed nothing as a certified partner

    # Alpha's second customer earns 5% of 1,000.00 a month under the draft, not 10%; its first
    # was signed while registered (5% either way).
    start = first_of_this_month()
    months = [(start + relativedelta(months=n)).strftime("%Y-%m") for n in range(3)]
    statements = listed["Alpha"]["statements"]
    assert [(s["period"], s["currency"]) for s in statements] == [(m, "USD") for m in months]
    bonuses = Decimal("2100.00")  # 5% of 30,000 and of 12,000, in the month they start
    for n, statement in enumerate(statements):
        first = bonuses if n == 0 else 0
        assert (statement["baseline"], statement["draft"], statement["difference"]) == (
            f"{Decimal('225.00') + first:.2f}",
            f"{Decimal('175.00') + first:.2f}",
            "-50.00",
        )
        (line,) = statement["lines"]
        assert line["customer_key"] == "domain:andromeda.example"
        assert (line["baseline"]["rule"], line["baseline"]["rate"]) == ("resale_margin", "0.10")
        assert (line["baseline"]["amount"], line["draft"]["amount"]) == ("100.00", "50.00")
        assert line["draft"]["rate"] == "0.05"
        assert "registered margin 5%" in line["draft"]["explanation"]

    summary = report["summary"]
    assert summary["partners_replayed"] == 5
    assert (summary["partners_listed"], summary["motions_lower"]) == (2, 2)
    assert (summary["statements_differing"], summary["difference"]) == (3, {"USD": "-150.00"})
    assert report["policy"]["effective_on"] is None
    assert [v["draft"] for v in report["policy"]["draft_versions"]] == [True]

    # the same what-if, as one flat table
    by_accept = what_if(wired, RAISED_CERTIFIED, headers={**ADMIN, "accept": "text/csv"})
    assert by_accept.status_code == 200, by_accept.text
    assert by_accept.headers["content-type"].startswith("text/csv")
    by_query = what_if(wired, RAISED_CERTIFIED, format="csv")
    assert by_query.text == by_accept.text

    rows = list(csv.DictReader(io.StringIO(by_accept.text)))
    assert sorted((r["kind"], r["legal_name"]) for r in rows if r["kind"] != "statement_line") == [
        ("statement", "Alpha"),
        ("statement", "Alpha"),
        ("statement", "Alpha"),
        ("tier_change", "Alpha"),
        ("tier_change", "Echo"),
    ]
    tier = next(r for r in rows if r["kind"] == "tier_change" and r["legal_name"] == "Echo")
    assert (tier["motion"], tier["baseline_tier"], tier["draft_tier"], tier["run"]) == (
        "sell",
        "certified",
        "registered",
        "baseline",
    )
    lines = [r for r in rows if r["kind"] == "statement_line"]
    assert {(r["baseline_amount"], r["draft_amount"]) for r in lines} == {("100.00", "50.00")}
    assert sum(Decimal(r["difference"]) for r in rows if r["kind"] == "statement") == -150

    return report, by_accept.text


def written(database_url: str) -> dict[str, int]:
    """Rows of every table, and the head of each log."""
    with psycopg.connect(database_url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        counts = {}
        for table in tables:
            row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # noqa: S608
            counts[table] = row[0] if row else 0
        for log in ("registration", "tiering", "commissions"):
            row = conn.execute(
                f"SELECT coalesce(max(notification_id), 0) FROM {log}_events"  # noqa: S608
            ).fetchone()
            counts[f"{log} head"] = row[0] if row else 0
    return counts


def test_the_baseline_reproduces_the_live_history_and_nothing_is_written(
    wired: Clients, database_url: str
) -> None:
    """Promotions (by contracts, by a rate, by a policy's day, by regions recorded after the
    clock ran ahead, by referrals), quarterly reviews with a demotion, renewals, a premium
    associate's election, closed months: the replay under the live versions decides all of it
    again, and the same way. A what-if writes nothing."""
    clients, start = wired, first_of_this_month()
    quarter = next_quarter_start(today())
    alpha = clients.enrol(legal_name="Alpha")
    golf = clients.enrol(legal_name="Golf")
    euro = clients.enrol(legal_name="Euro")
    late = clients.enrol(legal_name="Late", motions=[])
    sell(clients, alpha, "Aurora", "2500.00", start=start)  # certified at once
    eventually(lambda: sell_tier(clients, alpha) == "certified")
    renewed = sell(clients, alpha, "Andromeda", "1000.00", start=start, term_months=1)
    sell(clients, golf, "Gemini", "9000.00", start=start)  # 108,000 in one region: certified
    sell(clients, euro, "Eridanus", "2500.00", start=start, currency="EUR")  # not converted yet
    signed = clients.tiering.post(
        f"/v1/partners/{late}/addenda", json={"motion": "sell"}, headers=ADMIN
    )
    assert signed.status_code == 200, signed.text
    sell(clients, late, "Lyra", "1000.00", start=start)  # 12,000: certified from v2's day
    renewal = clients.registration.post(f"/v1/contracts/{renewed}/renewal", json={}, headers=CRM)
    assert renewal.status_code == 200, renewal.text
    rates = clients.tiering.post(
        "/v1/program/rates",
        json={"month": today().isoformat(), "rates": {"EUR": "1.10"}},
        headers=ADMIN,
    )
    assert rates.status_code == 201, rates.text  # 33,000 USD: certified
    adopted = clients.tiering.post(
        "/v1/program/policy",
        params={"effective_on": (quarter + relativedelta(months=1)).isoformat()},
        content=LOWER_CERTIFIED,
        headers={**ADMIN, "content-type": "application/yaml"},
    )
    assert adopted.status_code == 201, adopted.text
    referrer = clients.enrol(legal_name="Referrer", motions=[])
    for n in range(5):
        sell(clients, referrer, f"Referred{n}", "500.00", start=start, motion="refer")
    eventually(
        lambda: (
            clients.commissions.get(f"/v1/partners/{referrer}/account", headers=ADMIN).json()[
                "won_referrals_in_window"
            ]
            == 5
        )
    )
    elected = clients.commissions.post(
        f"/v1/partners/{referrer}/premium-associate",
        headers=bearer(Role.PARTNER, partner_id=uuid.UUID(referrer)),
    )
    assert elected.status_code == 201, elected.text
    sell(clients, referrer, "Referred5", "500.00", start=start, motion="refer")  # earns 3% a month
    settle(clients)

    run_clock(clients.tiering, quarter)  # a review
    widened = clients.tiering.put(
        f"/v1/partners/{golf}/regions", json={"regions": ["EMEA", "NA"]}, headers=ADMIN
    )
    assert widened.json()["tiers"]["sell"] == "premier_certified"  # on the clock's day
    run_clock(clients.tiering, quarter + relativedelta(months=1))  # v2 takes effect
    run_clock(clients.tiering, quarter + relativedelta(months=15))  # reviews; demotions
    run_clock(clients.commissions, start + relativedelta(months=2))  # months close
    settle(clients)

    tiering, commissions = runtime(clients.tiering), runtime(clients.commissions)
    tiers = TieringWhatIf.of(tiering).run(DraftPolicy(default_policy()))
    statements = CommissionsWhatIf.of(commissions).run(
        tiers.draft_policy, [c.as_published() for c in tiers.draft.changes], tiers.read_through
    )

    live_changes = [
        (e.originator_id, e.motion, e.previous_tier, e.tier, e.effective_on, e.reason, e.metrics)
        for e in map(tiering.app.decode, notifications(tiering.app.recorder, through=10**9))  # type: ignore[arg-type]
        if isinstance(e, Partner.TierChanged)
    ]
    replayed = [
        (c.partner_id, c.motion, c.previous_tier, c.tier, c.effective_on, c.reason, c.metrics)
        for c in tiers.baseline.changes
    ]
    assert replayed == live_changes
    reasons = {(c[5], c[3]) for c in live_changes}
    assert {("promotion", "certified"), ("promotion", "premier_certified")} <= reasons
    assert ("demotion", "registered") in reasons
    assert any(
        e.reason == "promotion" and e.effective_on == quarter for e in tiers.baseline.changes
    )

    live_statements: dict[uuid.UUID, Any] = {}
    for notification in notifications(commissions.app.recorder, through=10**9):  # type: ignore[arg-type]
        if notification.topic.endswith("Statement.Opened"):
            opened: Any = commissions.app.repository.get(notification.originator_id)
            live_statements[opened.id] = opened
    baseline = {s.id: s for s in statements.baseline.books.all_statements()}
    assert baseline.keys() == live_statements.keys()
    assert any(s.issued is not None for s in baseline.values())  # closed months
    lines = [line for s in baseline.values() for line in s.lines]
    assert {line.amount.currency for line in lines} == {"USD", "EUR"}
    assert {"premium_associate", "referral_fee", "resale_margin"} <= {line.rule for line in lines}
    for statement_id, live in live_statements.items():
        assert isinstance(live, Statement)
        assert (baseline[statement_id].lines, baseline[statement_id].issued) == (
            live.lines,
            live.issued,
        )

    before = written(database_url)
    assert what_if(clients, RAISED_CERTIFIED).status_code == 200
    replaced = what_if(clients, RAISED_CERTIFIED, effective_on=quarter.isoformat())
    assert replaced.status_code == 200, replaced.text
    settle(clients)
    assert written(database_url) == before


BAD_DRAFTS = [
    ("text/plain", RAISED_CERTIFIED, {}, 415, "application/yaml"),
    ("application/yaml", "tiers: [", {}, 422, "not a readable"),
    ("application/json", '{"tiers": {"motions": {}}}', {}, 422, "missing"),
    (
        "application/yaml",
        RAISED_CERTIFIED.replace("reporting_currency: USD", "reporting_currency: EUR"),
        {},
        422,
        "reporting currency",
    ),
    ("application/yaml", RAISED_CERTIFIED, {"effective_on": "someday"}, 422, "effective_on"),
    ("application/yaml", RAISED_CERTIFIED, {"format": "xml"}, 422, "format"),
]


def test_a_draft_that_cannot_be_replayed_is_a_problem(wired: Clients) -> None:
    for content_type, draft, params, status, says in BAD_DRAFTS:
        response = wired.tiering.post(
            "/v1/program/what-if",
            params=params,
            content=draft,
            headers={**ADMIN, "content-type": content_type},
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert says in response.text

    document: dict[str, Any] = parse_policy(RAISED_CERTIFIED).model_dump(mode="json")
    del document["commissions"]["resale_margin"]["alliance"]
    refused = wired.commissions.post(
        "/v1/what-if", json={"document": document, "tier_changes": []}, headers=ADMIN
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "resale_margin" in refused.json()["detail"]


def test_only_an_admin_runs_a_what_if(wired: Clients) -> None:
    assert what_if(wired, RAISED_CERTIFIED, headers={}).status_code == 401
    document = default_policy().model_dump(mode="json")
    for role in (Role.CHANNEL_MANAGER, Role.FINANCE, Role.AUDITOR, Role.CRM, Role.PARTNER):
        who = bearer(role, partner_id=uuid.uuid4() if role is Role.PARTNER else None)
        refused = what_if(wired, RAISED_CERTIFIED, headers=who)
        assert refused.status_code == 403, role
        assert refused.headers["content-type"] == "application/problem+json"
        asked = wired.commissions.post(
            "/v1/what-if", json={"document": document, "tier_changes": []}, headers=who
        )
        assert asked.status_code == 403, role


def test_commissions_unreachable_is_a_503_that_says_so(clients: Clients) -> None:
    def nowhere() -> Iterator[httpx.Client]:
        with httpx.Client(base_url="http://127.0.0.1:9", timeout=2) as client:
            yield client

    clients.tiering.app.dependency_overrides[commissions_client] = nowhere  # type: ignore[attr-defined]
    response = what_if(clients, RAISED_CERTIFIED)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "commissions service cannot be reached" in response.json()["detail"]
