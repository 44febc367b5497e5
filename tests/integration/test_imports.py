"""Bulk import from a CRM: a result per row, bad rows named by line, a rerun records nothing."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from typing import Any

import pytest

from shared.auth import Role
from tests.conftest import bearer
from tests.integration.conftest import Clients

CRM = bearer(Role.CRM)
COLUMNS = [
    "partner_id",
    "customer_name",
    "customer_country",
    "customer_domain",
    "customer_email",
    "product_line",
    "motion",
    "estimated_amount",
    "currency",
    "expected_close",
    "external_id",
]


SYLLABLES = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "ix")]


def company_name(rng: random.Random) -> str:
    """Invented names as varied as a real CRM's, so near matches are as rare as in one."""
    words = ("".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(2))
    return " ".join(word.capitalize() for word in words)


def registration_rows(partners: list[str], count: int, bad_every: int) -> tuple[str, set[int]]:
    """A CSV of ``count`` rows; every ``bad_every``-th is broken in some way. Returns the file
    and the line numbers (header is line 1) of the broken rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    bad_lines: set[int] = set()
    rng = random.Random(4)
    for n in range(count):
        name = company_name(rng)
        row = [
            partners[n % len(partners)],
            f"{name} Holdings",
            "US",
            f"{name.replace(' ', '').lower()}{n}.com",
            "",
            "cloud",
            "sell",
            f"{1000 + n}.00",
            "USD",
            "2027-06-30",
            f"OPP-{n:05d}",
        ]
        if n % bad_every == bad_every - 1:
            breakage = (n // bad_every) % 5
            if breakage == 0:
                row[8] = "dollars"  # not a currency code
            elif breakage == 1:
                row[9] = "2027-13-45"  # not a date
            elif breakage == 2:
                row[0] = "00000000-0000-4000-8000-00000000dead"  # not a partner
            elif breakage == 3:
                row[10] = ""  # no CRM id
            else:
                row[6] = "resell"  # not a motion
            bad_lines.add(n + 2)
        writer.writerow(row)
    return out.getvalue(), bad_lines


def post(clients: Clients, path: str, body: str, content_type: str) -> dict[str, Any]:
    response = clients.registration.post(
        path, content=body.encode(), headers={**CRM, "content-type": content_type}, timeout=600
    )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


@pytest.mark.long
def test_ten_thousand_rows_with_one_percent_bad(clients: Clients) -> None:
    # Twenty partners, five hundred rows each: tiering reads a partner's whole history to
    # decide on each of its registrations, so four partners of 2,500 made tiering's followers
    # (in this process, beside the import) the most of this test's time
    partners = [clients.enrol(legal_name=f"Importer {i}") for i in range(20)]
    body, bad_lines = registration_rows(partners, 10_000, bad_every=100)
    report = post(clients, "/v1/imports/registrations", body, "text/csv")
    assert report["rows"] == 10_000
    assert report["rejected"] == len(bad_lines) == 100
    assert report["recorded"] == 9_900
    rejected = {r["line"]: r for r in report["results"] if r["status"] == "rejected"}
    assert set(rejected) == bad_lines
    assert all(r["problem"]["detail"] for r in rejected.values())
    assert any("currency" in r["problem"]["detail"] for r in rejected.values())
    assert any("external_id" in r["problem"]["detail"] for r in rejected.values())
    assert any("not enrolled" in r["problem"]["detail"] for r in rejected.values())

    events_before = clients.registration.get(
        "/v1/events", params={"limit": 1}, headers=bearer(Role.AUDITOR)
    ).json()["head"]
    again = post(clients, "/v1/imports/registrations", body, "text/csv")
    assert (again["recorded"], again["unchanged"], again["rejected"]) == (0, 9_900, 100)
    events_after = clients.registration.get(
        "/v1/events", params={"limit": 1}, headers=bearer(Role.AUDITOR)
    ).json()["head"]
    assert events_after == events_before


def test_ndjson_contracts_and_registrations(clients: Clients) -> None:
    partner = clients.enrol()
    lines = [
        json.dumps(
            {
                "partner_id": partner,
                "customer": {"name": "Globex", "country": "US", "domain": "globex.com"},
                "product_line": "cloud",
                "motion": "sell",
                "estimated_value": {"amount": "5000", "currency": "USD"},
                "expected_close": "2027-06-30",
                "external_id": "R-1",
            }
        ),
        "{not json",
        json.dumps(["an", "array"]),
        "",
        json.dumps(
            {
                "partner_id": partner,
                "customer": {"name": "Globex", "country": "US", "domain": "www.globex.com"},
                "product_line": "cloud",
                "motion": "sell",
                "estimated_value": {"amount": "5000", "currency": "USD"},
                "expected_close": "2027-06-30",
                "external_id": "R-2",
            }
        ),
    ]
    report = post(clients, "/v1/imports/registrations", "\n".join(lines), "application/x-ndjson")
    by_line = {r["line"]: r for r in report["results"]}
    assert by_line[1]["status"] == "recorded"
    assert by_line[2]["status"] == by_line[3]["status"] == "rejected"
    assert by_line[5]["status"] == "rejected"  # same customer, same partner: already held
    assert "already holds" in by_line[5]["problem"]["detail"]

    contract_lines = [
        json.dumps(
            {
                "registration_id": by_line[1]["id"],
                "start_date": "2027-07-01",
                "mrr": {"amount": "400", "currency": "USD"},
                "external_id": "C-1",
            }
        ),
        json.dumps(
            {
                "partner_id": partner,
                "start_date": "2027-07-01",
                "customer": {"name": "Initech", "country": "US"},
                "mrr": {"amount": "400", "currency": "USD"},
            }
        ),
    ]
    contracts = post(
        clients, "/v1/imports/contracts", "\n".join(contract_lines), "application/x-ndjson"
    )
    assert [r["status"] for r in contracts["results"]] == ["recorded", "rejected"]
    rerun = post(
        clients, "/v1/imports/contracts", "\n".join(contract_lines), "application/x-ndjson"
    )
    assert [r["status"] for r in rerun["results"]] == ["unchanged", "rejected"]


def test_what_is_not_an_import(clients: Clients) -> None:
    wrong_type = clients.registration.post(
        "/v1/imports/registrations",
        content=b"<xml/>",
        headers={**CRM, "content-type": "application/xml"},
    )
    assert wrong_type.status_code == 415
    assert wrong_type.headers["content-type"] == "application/problem+json"
    not_utf8 = clients.registration.post(
        "/v1/imports/registrations",
        content="é".encode("latin-1"),
        headers={**CRM, "content-type": "text/csv"},
    )
    assert not_utf8.status_code == 400
    partner_cannot_import_contracts = clients.registration.post(
        "/v1/imports/contracts",
        content=b"",
        headers={**bearer(Role.PARTNER, uuid.uuid4()), "content-type": "text/csv"},
    )
    assert partner_cannot_import_contracts.status_code == 403
