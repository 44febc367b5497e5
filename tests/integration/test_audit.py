"""What an auditor sees, over HTTP and through `dealreg audit`: who and why on every event and
across services, the history of an entity, the NDJSON export, answers as of a past instant, the
chains verified, and every projection replayed without a difference."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from dealreg.cli import cli
from shared.auth import Role
from tests.conftest import bearer, eventually, registration_body
from tests.integration.conftest import Clients

pytestmark = pytest.mark.postgres

CRM, ADMIN, AUDITOR = bearer(Role.CRM), bearer(Role.ADMIN), bearer(Role.AUDITOR)
FINANCE, MANAGER = bearer(Role.FINANCE), bearer(Role.CHANNEL_MANAGER)


def started() -> date:
    """When the contracts of these tests start: ten days ago (the month before, early in a
    month)."""
    return (datetime.now(UTC) - timedelta(days=10)).date()


def sign(clients: Clients, partner: str, domain: str, *, correlation: str | None = None) -> str:
    headers = {**CRM, **({"X-Correlation-ID": correlation} if correlation else {})}
    body = {**registration_body(partner, domain=domain), "motion": "refer"}
    registered = clients.registration.post("/v1/registrations", json=body, headers=headers)
    assert registered.status_code == 201, registered.text
    start = started().isoformat()
    signed = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registered.json()["registration_id"],
            "start_date": start,
            "term_months": 12,
            "mrr": {"amount": "1000.00", "currency": "USD"},
        },
        headers=headers,
    )
    assert signed.status_code == 201, signed.text
    registration_id: str = registered.json()["registration_id"]
    return registration_id


def history(client: Any, path: str, **params: str) -> list[dict[str, Any]]:
    response = client.get(path, params=params, headers=AUDITOR)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def test_every_event_says_who_and_why_and_links_to_what_it_caused(clients: Clients) -> None:
    partner = clients.enrol()
    registration_id = sign(clients, partner, "traced.example", correlation="crm-sync-42")

    # The index is a projection: it has the signature once its follower has taken it.
    at_registration = eventually(
        lambda: (
            (found := history(clients.registration, "/v1/history", correlation_id="crm-sync-42"))
            and {e["type"] for e in found} >= {"DealRegistered", "ContractSigned"}
            and found
        )
    )
    for logged in at_registration:
        cause = logged["cause"]
        assert (cause["actor"], cause["role"]) == ("test-crm", "crm")
        assert cause["request_id"]
        assert cause["causation_id"] == f"request:{cause['request_id']}"
    signed = next(e for e in at_registration if e["type"] == "ContractSigned")

    # Tiering and commissions decided on the signature: their events name it as their cause
    # and carry the CRM's correlation id.
    # Tiering also decides on the registration (an approval counts): wait for the signature.
    by_signature = f"registration:{signed['position']}"

    def traced(service: Any) -> list[dict[str, Any]] | None:
        found = history(service, "/v1/history", correlation_id="crm-sync-42")
        return found if any(e["cause"]["causation_id"] == by_signature for e in found) else None

    for service in (clients.tiering, clients.commissions):
        caused = eventually(partial(traced, service))
        assert {e["cause"]["role"] for e in caused} == {"service"}

    # The registration's own history, in order, with the actor of each step.
    own = eventually(lambda: history(clients.registration, f"/v1/history/{registration_id}"))
    assert [e["position"] for e in own] == sorted(e["position"] for e in own)
    assert own[0]["type"] == "DealRegistered"
    assert own[0]["cause"]["actor"] == "test-crm"

    # A customer, by its matching key: registration's events and commissions' alike.
    key = own[0]["data"]["customer_key"]
    for service in (clients.registration, clients.commissions):
        about = eventually(
            lambda service=service: history(service, "/v1/history", customer_key=key)
        )
        assert all(e["data"].get("customer_key") == key for e in about)

    # By actor: the channel manager who enrolled the partner.
    eventually(
        lambda: any(
            e["type"] == "PartnerEnrolled" and e["stream_id"] == partner
            for e in history(clients.tiering, "/v1/history", actor="test-admin")
        )
    )

    # Only auditors and admins read the log.
    assert (
        clients.registration.get("/v1/history", params={"actor": "x"}, headers=CRM).status_code
        == 403
    )
    # Filters combine: the enrolment was by that actor and about that partner; with no
    # filter, the whole log in order.
    enrolments = history(clients.tiering, "/v1/history", actor="test-admin", customer_key="-")
    assert enrolments == []
    everything = clients.tiering.get("/v1/history", headers=AUDITOR).json()["events"]
    assert [e["position"] for e in everything] == sorted(e["position"] for e in everything)
    assert any(e["type"] == "PartnerEnrolled" for e in everything)


def test_the_export_streams_a_slice_of_the_log_as_ndjson(clients: Clients) -> None:
    partner = clients.enrol()
    before = datetime.now(UTC)
    sign(clients, partner, "exported.example")
    response = clients.registration.get(
        "/v1/events/export",
        params={"type": ["ContractSigned", "DealRegistered"], "since": before.isoformat()},
        headers=AUDITOR,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["type"] for line in lines] == ["DealRegistered", "ContractSigned"]
    for line in lines:
        assert line["log"] == "registration"
        assert len(line["chain_hash"]) == 64
        assert line["cause"]["actor"] == "test-crm"
    until = clients.registration.get(
        "/v1/events/export", params={"until": before.isoformat()}, headers=AUDITOR
    )
    assert all(
        json.loads(line)["recorded_at"] < before.isoformat() for line in until.text.splitlines()
    )
    assert clients.registration.get("/v1/events/export", headers=CRM).status_code == 403
    backwards = clients.registration.get(
        "/v1/events/export",
        params={"since": before.isoformat(), "until": (before - timedelta(1)).isoformat()},
        headers=AUDITOR,
    )
    assert backwards.status_code == 200  # an empty window: nothing in it
    assert backwards.text == ""


def test_answers_as_of_a_past_instant_equal_what_was_shown_then(clients: Clients) -> None:
    partner = clients.enrol()
    sign(clients, partner, "first.example")
    pending = clients.registration.post(
        "/v1/registrations", json=registration_body(partner, domain="open.example"), headers=CRM
    )
    assert pending.status_code == 201, pending.text
    registration_id = pending.json()["registration_id"]
    period = started().strftime("%Y-%m")  # the month the contracts start in
    statement_path = f"/v1/statements/{partner}/{period}"
    eventually(lambda: clients.commissions.get(statement_path, headers=FINANCE).status_code == 200)
    clients.settle()  # what is shown then is what every projection has taken in by then
    partner_path, registration_path = (
        f"/v1/partners/{partner}",
        f"/v1/registrations/{registration_id}",
    )

    then = {
        "registration": clients.registration.get(registration_path, headers=AUDITOR).json(),
        "standing": clients.tiering.get(partner_path, headers=AUDITOR).json(),
        "statement": clients.commissions.get(statement_path, headers=FINANCE).json(),
    }
    instant = datetime.now(UTC)
    time.sleep(0.01)

    # Afterwards: the registration moves on, the partner wins more, the statement grows.
    withdrawn = clients.registration.post(
        f"{registration_path}/withdrawal", json={"reason": "lost interest"}, headers=CRM
    )
    assert withdrawn.status_code == 200, withdrawn.text
    for n in range(3):
        sign(clients, partner, f"later{n}.example")
    eventually(
        lambda: clients.commissions.get(statement_path, headers=FINANCE).json()["lines"] == 4
    )
    now_standing = clients.tiering.get(partner_path, headers=AUDITOR).json()
    assert now_standing != then["standing"]

    as_of = {"as_of": instant.isoformat()}
    assert (
        clients.registration.get(registration_path, params=as_of, headers=AUDITOR).json()
        == (then["registration"])
    ), withdrawn.text
    assert (
        clients.tiering.get(partner_path, params=as_of, headers=AUDITOR).json() == then["standing"]
    )
    assert (
        clients.commissions.get(statement_path, params=as_of, headers=FINANCE).json()
        == (then["statement"])
    )

    before_it_all = {"as_of": "2001-01-01T00:00:00Z"}
    gone = clients.registration.get(registration_path, params=before_it_all, headers=AUDITOR)
    assert gone.status_code == 404
    assert "as of 2001-01-01" in gone.json()["detail"]
    naive = clients.registration.get(
        registration_path, params={"as_of": "2030-01-01T00:00:00"}, headers=AUDITOR
    )
    assert naive.status_code == 422


def test_audit_verify_and_replay_over_the_three_services(
    clients: Clients, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = clients.enrol()
    for n in range(3):
        sign(clients, partner, f"replayed{n}.example")
    until = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    for service in (clients.registration, clients.tiering, clients.commissions):
        assert (
            service.post("/v1/admin/clock", json={"until": until}, headers=ADMIN).status_code == 200
        )
    for service in (clients.registration, clients.tiering, clients.commissions):
        eventually(lambda service=service: service.get("/readyz").status_code == 200)

    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    intact = runner.invoke(cli, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    verdicts = [json.loads(line) for line in intact.stdout.splitlines() if line.startswith("{")]
    assert {v["log"]: v["intact"] for v in verdicts} == dict.fromkeys(
        ("registration", "commissions", "tiering"), True
    )

    replayed = runner.invoke(cli, ["audit", "replay", "--schema", "audit_scratch"])
    assert replayed.exit_code == 0, replayed.output
    reports = [json.loads(line) for line in replayed.stdout.splitlines() if line.startswith("{")]
    assert [r["service"] for r in reports] == ["registration", "commissions", "tiering"]
    assert all(r["identical"] and r["events_applied"] > 0 for r in reports)

    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE tiering_events SET state = state || ' '::bytea WHERE notification_id = 2"
        )
    broken = runner.invoke(cli, ["audit", "verify", "--service", "tiering"])
    assert broken.exit_code == 1
    verdict = json.loads(next(line for line in broken.stdout.splitlines() if line.startswith("{")))
    assert verdict["first_break"]["position"] == 2
    assert verdict["first_break"]["kind"] == "changed"


def test_a_replay_names_the_rows_a_tampered_projection_has(
    clients: Clients, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = clients.enrol()
    sign(clients, partner, "projected.example")
    eventually(lambda: clients.commissions.get("/readyz").status_code == 200)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE commissions_lines SET amount = amount * 2")
    monkeypatch.setenv("DATABASE_URL", database_url)
    replayed = CliRunner().invoke(cli, ["audit", "replay", "--service", "commissions"])
    assert replayed.exit_code == 1
    report = json.loads(next(line for line in replayed.stdout.splitlines() if line.startswith("{")))
    (lines,) = [d for d in report["differences"] if d["table"] == "commissions_lines"]
    assert (lines["only_live"], lines["only_rebuilt"]) == (1, 1)
    assert lines["live_rows"][0]["amount"] == "2400.00"
    assert lines["rebuilt_rows"][0]["amount"] == "1200.00"
    assert uuid.UUID(lines["live_rows"][0]["partner_id"]) == uuid.UUID(partner)


def test_the_auditors_log_keeps_amounts_exact(clients: Clients) -> None:
    """Money in the log reads back as the decimal that was recorded, never as a float."""
    partner = clients.enrol()
    sign(clients, partner, "exact.example")
    (signed,) = [
        e for e in history(clients.registration, "/v1/events") if e["type"] == "ContractSigned"
    ]
    assert signed["data"]["mrr"] == {"amount": "1000.00", "currency": "USD"}
    exported = clients.registration.get("/v1/events/export", headers=AUDITOR)
    assert exported.status_code == 200, exported.text
    lines = [json.loads(line) for line in exported.text.splitlines()]
    (line,) = [e for e in lines if e["type"] == "ContractSigned"]
    assert line["data"]["mrr"] == {"amount": "1000.00", "currency": "USD"}
    fees = eventually(
        lambda: [
            e
            for e in history(clients.commissions, "/v1/events")
            if e["type"].endswith("LineEntered")
        ]
    )
    assert {e["data"]["amount"]["amount"] for e in fees} == {"1200.00"}  # the referral fee
    assert {e["data"]["rate"] for e in fees} == {"0.10"}
