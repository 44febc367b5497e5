"""Bad input is refused at the edge with a 4xx problem naming the field, and records nothing.

The cases of issue 18 (items 3 and 4): text PostgreSQL cannot hold, dates the term arithmetic
cannot hold, currencies outside ISO 4217, nesting 10,000 deep, oversized fields, lines and
bodies, CSV with CR-only line ends. Each case checks the answer and that the log of the service
that answered holds no new event.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from shared.auth import Role
from tests.conftest import PARTNER_BODY, bearer, registration_body
from tests.integration.conftest import Clients
from tests.integration.test_http_errors import assert_problem

ADMIN = bearer(Role.ADMIN)
CRM = bearer(Role.CRM)
DEEP = 10_000

CSV_COLUMNS = (
    "partner_id,customer_name,customer_country,customer_domain,product_line,motion,"
    "estimated_amount,currency,expected_close,external_id"
)


def head(client: TestClient) -> int:
    """The position of the last event in the service's log, as an auditor reads it."""
    response = client.get("/v1/events", params={"limit": 1}, headers=bearer(Role.AUDITOR))
    assert response.status_code == 200, response.text
    position: int = response.json()["head"]
    return position


def refused(
    client: TestClient,
    method: str,
    path: str,
    *,
    status: int,
    kind: str,
    field: str | None = None,
    **request: Any,
) -> dict[str, Any]:
    """The request gets a ``status`` problem of ``kind`` naming ``field``; nothing is recorded."""
    before = head(client)
    response = client.request(method, path, **request)
    body = assert_problem(response, status, kind)
    if field is not None:
        named = [".".join(error["location"]) for error in body.get("errors", [])]  # type: ignore[attr-defined]
        named.extend(body)  # an extension member, such as ``line``
        assert any(name.endswith(field) for name in named) or field in str(body["detail"]), (
            field,
            body,
        )
    assert head(client) == before, f"{method} {path} recorded an event: {response.text}"
    return body


def with_customer(body: dict[str, Any], **customer: str) -> dict[str, Any]:
    return {**body, "customer": {**body["customer"], **customer}}


def contract(start: str, term_months: int, currency: str = "USD", **extra: Any) -> dict[str, Any]:
    return {
        "customer": {"name": "Globex", "country": "US", "domain": "globex.com"},
        "start_date": start,
        "term_months": term_months,
        "mrr": {"amount": "1000", "currency": currency},
        **extra,
    }


def csv_import(*rows: str) -> dict[str, Any]:
    return {
        "content": "\n".join((CSV_COLUMNS, *rows)).encode(),
        "headers": {**CRM, "content-type": "text/csv"},
    }


def ndjson_import(*lines: str) -> dict[str, Any]:
    return {
        "content": "\n".join(lines).encode(),
        "headers": {**CRM, "content-type": "application/x-ndjson"},
    }


def csv_row(partner_id: str, *, name: str = "Acme Ltd", external_id: str = "OPP-1") -> str:
    return f"{partner_id},{name},GB,acme.co.uk,cloud,sell,12000,USD,2027-03-31,{external_id}"


def policy(body: str, media_type: str) -> dict[str, Any]:
    return {
        "params": {"effective_on": "2031-01-01"},
        "content": body.encode(),
        "headers": {**ADMIN, "content-type": media_type},
    }


# --- text PostgreSQL cannot hold ------------------------------------------------------------


def test_nul_and_lone_surrogates_are_refused_in_every_body(clients: Clients) -> None:
    partner_id = clients.enrol()
    partner = bearer(Role.PARTNER, partner_id=uuid.UUID(partner_id))
    good = registration_body(partner_id)
    # Sent as json.dumps writes them (escaped): httpx cannot encode a lone surrogate.
    for body, field in (
        (with_customer(good, name="Acme\u0000Ltd"), "customer.name"),
        ({**good, "product_line": "clo\u0000ud"}, "product_line"),
        (with_customer(good, domain="acme\u0000.com"), "customer.domain"),
        ({**good, "external_id": "OPP\u00001"}, "external_id"),
        (with_customer(good, name="Acme \ud800"), "customer.name"),
    ):
        refused(
            clients.registration,
            "POST",
            "/v1/registrations",
            status=422,
            kind="validation-error",
            field=field,
            content=json.dumps(body),
            headers={**partner, "content-type": "application/json"},
        )
    for body, field in (
        ({**PARTNER_BODY, "legal_name": "North\u0000wind"}, "legal_name"),
        ({**PARTNER_BODY, "legal_name": "\udfff"}, "legal_name"),
        ({**PARTNER_BODY, "regions": ["EMEA", "AP\u0000AC"]}, "regions"),
    ):
        refused(
            clients.tiering,
            "POST",
            "/v1/partners",
            status=422,
            kind="validation-error",
            field=field,
            content=json.dumps(body),
            headers={**ADMIN, "content-type": "application/json"},
        )
    for document, media_type in (
        ('{"tiers": {"motions": {"sell": {"tiers": [{"name": "\\u0000"}]}}}}', "application/json"),
        ('tiers: {motions: {sell: {tiers: [{name: "a\\0"}]}}}', "application/yaml"),
        ('tiers: {motions: {sell: {tiers: [{name: "a\\ud800"}]}}}', "application/yaml"),
    ):
        refused(
            clients.tiering,
            "POST",
            "/v1/program/policy",
            status=422,
            kind="policy-rejected",
            field="name",
            **policy(document, media_type),
        )
    # The partner enrolled first registers as before: nothing above reached a projection.
    registered = clients.registration.post("/v1/registrations", json=good, headers=partner)
    assert registered.status_code == 201, registered.text


def test_nul_is_refused_in_query_and_path_parameters(clients: Clients) -> None:
    for path, field in (
        ("/v1/registrations?external_id=OPP%001", "external_id"),
        ("/v1/registrations/by-external-id/OPP%001", "external_id"),
        ("/v1/contracts/by-external-id/C%00", "external_id"),
        ("/v1/history?actor=a%00b", "actor"),
    ):
        refused(
            clients.registration,
            "GET",
            path,
            status=422,
            kind="validation-error",
            field=field,
            headers=ADMIN,
        )
    refused(
        clients.commissions,
        "GET",
        "/v1/ledger?customer_key=k%00",
        status=422,
        kind="validation-error",
        field="customer_key",
        headers=ADMIN,
    )
    refused(
        clients.tiering,
        "POST",
        "/v1/program/policy",
        status=422,
        kind="validation-error",
        field="note",
        **{
            **policy("{}", "application/json"),
            "params": {"effective_on": "2031-01-01", "note": "\0"},
        },
    )


def test_an_import_row_with_unstorable_text_is_rejected_by_its_line(clients: Clients) -> None:
    partner_id = clients.enrol()
    before = head(clients.registration)
    response = clients.registration.post(
        "/v1/imports/registrations", **csv_import(csv_row(partner_id, name="Acme\u0000Ltd"))
    )
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert (result["line"], result["status"]) == (2, "rejected")
    assert "customer.name" in result["problem"]["detail"]
    line = json.dumps({**registration_body(partner_id), "external_id": "OPP-\ud800"})
    response = clients.registration.post("/v1/imports/registrations", **ndjson_import(line))
    [result] = response.json()["results"]
    assert (result["line"], result["status"]) == (1, "rejected")
    assert "external_id" in result["problem"]["detail"]
    assert head(clients.registration) == before


# --- dates ----------------------------------------------------------------------------------


def test_dates_outside_the_program_are_refused(clients: Clients) -> None:
    for start, months, field in (
        ("0001-01-01", 1, "start_date"),
        ("9999-12-01", 12, "start_date"),
        ("9999-01-01", 120, "start_date"),
        ("1899-12-31", 12, "start_date"),
        ("2999-06-01", 12, "term_months"),  # starts in range, ends after it
    ):
        refused(
            clients.registration,
            "POST",
            "/v1/contracts",
            status=422,
            kind="validation-error",
            field=field,
            json=contract(start, months),
            headers=CRM,
        )
    partner_id = clients.enrol()
    refused(
        clients.registration,
        "POST",
        "/v1/registrations",
        status=422,
        kind="validation-error",
        field="expected_close",
        json={**registration_body(partner_id), "expected_close": "0001-01-01"},
        headers=CRM,
    )
    refused(
        clients.tiering,
        "POST",
        "/v1/partners",
        status=422,
        kind="validation-error",
        field="enrolled_on",
        json={**PARTNER_BODY, "enrolled_on": "9999-12-31"},
        headers=ADMIN,
    )
    for query, field in (("on=0001-01-01", "on"), ("as_of=9999-12-31T00:00:00Z", "as_of")):
        refused(
            clients.tiering,
            "GET",
            f"/v1/partners/{partner_id}?{query}",
            status=422,
            kind="validation-error",
            field=field,
            headers=ADMIN,
        )
    # The last term the program holds, then a renewal past it.
    signed = clients.registration.post(
        "/v1/contracts", json=contract("2999-01-01", 12), headers=CRM
    )
    assert signed.status_code == 201, signed.text
    assert signed.json()["end_date"] == "2999-12-31"
    refused(
        clients.registration,
        "POST",
        f"/v1/contracts/{signed.json()['contract_id']}/renewal",
        status=422,
        kind="rule-of-engagement",
        field="term_months",
        json={"term_months": 12},
        headers=CRM,
    )


def test_the_clock_runs_only_to_an_instant_of_the_program(clients: Clients) -> None:
    services = (clients.registration, clients.tiering, clients.commissions)
    for client, until in itertools.product(
        services, ("3000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1899-12-31T23:00:00Z")
    ):
        refused(
            client,
            "POST",
            "/v1/admin/clock",
            status=422,
            kind="validation-error",
            field="until",
            json={"until": until},
            headers=ADMIN,
        )


# --- currencies -----------------------------------------------------------------------------


def test_currencies_outside_iso_4217_are_refused(clients: Clients) -> None:
    partner_id = clients.enrol()
    for code in ("ZZZ", "ABC", "XTS", "QQQ", "XXX", "XAU"):
        refuse_currency(clients, partner_id, code)


def refuse_currency(clients: Clients, partner_id: str, code: str) -> None:
    registration = registration_body(partner_id)
    registration["estimated_value"] = {"amount": "12000", "currency": code}
    refused(
        clients.registration,
        "POST",
        "/v1/registrations",
        status=422,
        kind="validation-error",
        field="estimated_value.currency",
        json=registration,
        headers=CRM,
    )
    refused(
        clients.registration,
        "POST",
        "/v1/contracts",
        status=422,
        kind="validation-error",
        field="mrr.currency",
        json=contract("2027-01-01", 12, currency=code),
        headers=CRM,
    )
    refused(
        clients.tiering,
        "POST",
        "/v1/program/rates",
        status=422,
        kind="validation-error",
        field="rates",
        json={"month": "2027-01-01", "rates": {"EUR": "1.08", code: "1.5"}},
        headers=ADMIN,
    )
    refused(
        clients.tiering,
        "POST",
        "/v1/program/policy",
        status=422,
        kind="policy-rejected",
        field="reporting_currency",
        **policy(json.dumps({"reporting_currency": code, "tiers": {}}), "application/json"),
    )


# --- nesting --------------------------------------------------------------------------------


def test_documents_nested_10000_deep_are_refused(clients: Clients) -> None:
    refused(
        clients.registration,
        "POST",
        "/v1/imports/registrations",
        status=422,
        kind="too-deeply-nested",
        field="line",
        **ndjson_import('{"customer": ' + "[" * DEEP + "]" * DEEP + "}"),
    )
    for body, media_type in (
        ('{"tiers": ' + "[" * DEEP + "]" * DEEP + "}", "application/json"),
        ("tiers: " + "[" * DEEP + "]" * DEEP, "application/yaml"),
        ("tiers: " + "{a: " * DEEP + "b" + "}" * DEEP, "application/yaml"),
        ("tiers:\n" + "- " * DEEP + "x\n", "application/yaml"),  # block style
    ):
        refused(
            clients.tiering,
            "POST",
            "/v1/program/policy",
            status=422,
            kind="policy-rejected",
            field="nested",
            **policy(body, media_type),
        )
    deep_body = json.dumps({**PARTNER_BODY, "regions": []})[:-1] + ', "x": ' + "[" * DEEP
    deep_body += "]" * DEEP + "}"
    response = clients.tiering.post(
        "/v1/partners", content=deep_body, headers={**ADMIN, "content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text


# --- sizes ----------------------------------------------------------------------------------


def test_oversized_fields_lines_and_bodies_are_refused(clients: Clients) -> None:
    partner_id = clients.enrol()
    megabyte = "x" * 1_000_000
    refused(
        clients.registration,
        "POST",
        "/v1/imports/registrations",
        status=413,
        kind="line-too-long",
        field="line",
        **csv_import(csv_row(partner_id, name="y" * 10_000_000)),
    )
    refused(
        clients.registration,
        "POST",
        "/v1/imports/registrations",
        status=413,
        kind="line-too-long",
        field="line",
        **csv_import(csv_row(partner_id), csv_row(partner_id, external_id=megabyte)),
    )
    line = json.dumps({**registration_body(partner_id), "external_id": megabyte})
    refused(
        clients.registration,
        "POST",
        "/v1/imports/registrations",
        status=413,
        kind="line-too-long",
        field="line",
        **ndjson_import(line),
    )
    refused(
        clients.registration,
        "POST",
        "/v1/registrations",
        status=422,
        kind="validation-error",
        field="external_id",
        json={**registration_body(partner_id), "external_id": megabyte},
        headers=CRM,
    )
    too_large = refused(
        clients.registration,
        "POST",
        "/v1/registrations",
        status=413,
        kind="content-too-large",
        json={**registration_body(partner_id), "padding": "x" * 2_000_000},
        headers=CRM,
    )
    # the route's limit, not the service's 50 MiB for imports: no more than that is read
    assert too_large["limit"] == 1024 * 1024
    refused(
        clients.tiering,
        "POST",
        "/v1/program/policy",
        status=413,
        kind="content-too-large",
        **policy("# " + "x" * 2_000_000, "application/yaml"),
    )
    refused(
        clients.tiering,
        "POST",
        "/v1/partners",
        status=422,
        kind="validation-error",
        field="function",
        json={**PARTNER_BODY, "function": "s" * 100_000},
        headers=ADMIN,
    )


def test_a_body_sent_in_chunks_is_read_no_further_than_the_limit(clients: Clients) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"legal_name": "'
        for _ in range(64):
            yield b"x" * 64 * 1024  # 4 MiB in all, no Content-Length
        yield b'"}'

    refused(
        clients.tiering,
        "POST",
        "/v1/partners",
        status=413,
        kind="content-too-large",
        content=chunks(),
        headers={**ADMIN, "content-type": "application/json"},
    )


def test_an_import_larger_than_its_limit_is_refused_before_it_is_read(clients: Clients) -> None:
    """The whole body is not read: the size it announces is enough."""
    before = head(clients.registration)
    request = clients.registration.build_request(
        "POST",
        "/v1/imports/registrations",
        content=b"x" * 1024,
        headers={**CRM, "content-type": "text/csv"},
    )
    request.headers["content-length"] = str(64 * 1024 * 1024)
    response = clients.registration.send(request)
    assert_problem(response, 413, "content-too-large")
    assert head(clients.registration) == before


def test_a_csv_with_cr_only_line_ends_is_refused(clients: Clients) -> None:
    partner_id = clients.enrol()
    rows = (CSV_COLUMNS, csv_row(partner_id), csv_row(partner_id, external_id="OPP-2"))
    refused(
        clients.registration,
        "POST",
        "/v1/imports/registrations",
        status=422,
        kind="unreadable-csv",
        field="line",
        content="\r".join(rows).encode(),
        headers={**CRM, "content-type": "text/csv"},
    )
