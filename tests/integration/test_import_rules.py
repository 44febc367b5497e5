"""A bulk import decides its rows as if they had been sent one after another: a near-duplicate
of a row earlier in the same file is flagged, in the same batch or a later one, though neither
row is in the deals view yet; and the batched lookups of the views answer as the per-row ones."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from services.registration.domain.customers import CustomerIdentity, match_keys
from services.registration.import_lookups import BatchLookups
from services.registration.importer import Importer
from services.registration.projections import ContractsView, DealsView, RegistrationIndex
from shared.auth import Role
from shared.database import connect_database
from tests.conftest import bearer, eventually
from tests.integration.conftest import Clients
from tests.integration.test_imports import COLUMNS, company_name, post

pytestmark = pytest.mark.postgres


def csv_of(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                "customer_country": "US",
                "product_line": "cloud",
                "motion": "sell",
                "estimated_amount": "5000.00",
                "currency": "USD",
                "expected_close": "2027-06-30",
                **row,
            }
        )
    return out.getvalue()


def flags_of(clients: Clients, registration_id: str) -> list[dict[str, Any]]:
    response = clients.registration.get(
        f"/v1/registrations/{registration_id}", headers=bearer(Role.ADMIN)
    )
    assert response.status_code == 200, response.text
    flags: list[dict[str, Any]] = response.json()["flags"]
    return flags


@pytest.mark.parametrize("batch", [Importer.BATCH, 1])
def test_a_near_duplicate_of_an_earlier_row_of_the_file_is_flagged(
    clients: Clients, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Importer, "BATCH", batch)  # 1: every row a batch of its own
    first, second = clients.enrol(legal_name="First"), clients.enrol(legal_name="Second")
    body = csv_of(
        [
            {"partner_id": first, "customer_name": "Quorvane Meditech", "external_id": "Q-1"},
            {"partner_id": second, "customer_name": "Zelbrix Aerotron", "external_id": "Z-1"},
            {"partner_id": second, "customer_name": "Quorvane Meditek", "external_id": "Q-2"},
            {"partner_id": first, "customer_name": "Quorvane Meditek", "external_id": "Q-3"},
        ]
    )
    report = post(clients, "/v1/imports/registrations", body, "text/csv")
    by_line = {r["line"]: r for r in report["results"]}
    assert [by_line[n]["status"] for n in (2, 3, 4, 5)] == ["recorded"] * 4

    duplicates = [f for f in flags_of(clients, by_line[4]["id"]) if f["rule"] != "conflict"]
    assert [f["collides_with"] for f in duplicates] == [f"registration:{by_line[2]['id']}"]
    assert duplicates[0]["rule"] == "possible-duplicate"
    # Line 5 is line 4's customer for another partner (a conflict, not a duplicate of it) and
    # a near-duplicate of line 2, named once.
    later = [f for f in flags_of(clients, by_line[5]["id"]) if f["rule"] == "possible-duplicate"]
    assert [f["collides_with"] for f in later] == [f"registration:{by_line[2]['id']}"]
    assert not [f for f in flags_of(clients, by_line[3]["id"]) if f["rule"] != "conflict"]


def test_the_same_rows_one_request_at_a_time_are_flagged_alike(clients: Clients) -> None:
    """The rule the import follows, shown on single requests (the view caught up between)."""
    first, second = clients.enrol(legal_name="First"), clients.enrol(legal_name="Second")
    ids = []
    for partner, name in ((first, "Quorvane Meditech"), (second, "Quorvane Meditek")):
        response = clients.registration.post(
            "/v1/registrations",
            json={
                "partner_id": partner,
                "customer": {"name": name, "country": "US"},
                "product_line": "cloud",
                "motion": "sell",
                "estimated_value": {"amount": "5000.00", "currency": "USD"},
                "expected_close": "2027-06-30",
            },
            headers=bearer(Role.ADMIN),
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["registration_id"])
        eventually(lambda: listed(clients, ids[-1]))
    duplicates = [f for f in flags_of(clients, ids[1]) if f["rule"] == "possible-duplicate"]
    assert [f["collides_with"] for f in duplicates] == [f"registration:{ids[0]}"]


def listed(clients: Clients, registration_id: str) -> bool:
    page = clients.registration.get(
        "/v1/registrations", params={"limit": 500}, headers=bearer(Role.ADMIN)
    ).json()
    return any(r["registration_id"] == registration_id for r in page["registrations"])


def test_batched_lookups_answer_as_the_per_row_lookups(clients: Clients, database_url: str) -> None:
    partners = [clients.enrol(legal_name=f"Importer {i}") for i in range(3)]
    rng = random.Random(9)
    names = [company_name(rng) for _ in range(150)]
    rows = [
        {"partner_id": partners[n % 3], "customer_name": name, "external_id": f"L-{n}"}
        for n, name in enumerate(names)
    ]
    rows.append(
        {
            "partner_id": partners[0],
            "customer_name": "Initech",
            "customer_domain": "initech.com",
            "external_id": "L-init",
        }
    )
    report = post(clients, "/v1/imports/registrations", csv_of(rows), "text/csv")
    assert report["recorded"] == len(rows)
    initech = next(r["id"] for r in report["results"] if r["line"] == len(rows) + 1)
    contract = json.dumps(
        {
            "registration_id": initech,
            "start_date": "2027-07-01",
            "mrr": {"amount": "400", "currency": "USD"},
            "external_id": "C-init",
        }
    )
    assert post(clients, "/v1/imports/contracts", contract, "application/x-ndjson")["recorded"]

    def caught_up() -> bool:
        with psycopg.connect(database_url) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM registration_deals),"
                " (SELECT count(*) FROM registration_contracts)"
            ).fetchone()
        return counts == (len(rows), 1)

    eventually(caught_up)
    database = connect_database(database_url)
    deals, contracts = DealsView.open(database), ContractsView.open(database)
    try:
        index, batched = RegistrationIndex(deals, contracts), BatchLookups(deals, contracts)
        asked = []
        for n, name in enumerate(names[:60]):
            altered = name[:3] + name[4:] if n % 3 else name + "s"
            for identity in (
                CustomerIdentity.of(name=altered, country="US"),
                CustomerIdentity.of(name=name, country="US", domain=f"{altered}.com"),
            ):
                asked.append((identity, "cloud", match_keys(identity)))
        asked.append(
            (CustomerIdentity.of(name="Nobody At All", country="FR"), "cloud", frozenset())
        )
        one_by_one = [list(index.similar_customers(i, line)) for i, line, _ in asked]
        assert sum(map(len, one_by_one)) > len(asked)  # not a comparison of empty answers
        assert batched.similar_customers(asked) == one_by_one

        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT customer_key, end_date FROM registration_contracts"
            ).fetchone()
        assert row is not None
        key, end = row
        keys = [key, "domain:nobody.example", *(i.key for i, _, _ in asked[:20])]
        for on in (end, end - timedelta(days=400)):
            expected = {k: found for k in keys if (found := index.incumbent(k, on)) is not None}
            assert batched.incumbents(keys, on) == expected
        assert key in batched.incumbents(keys, end)
    finally:
        database.close()
