"""Bulk import from a CRM: CSV or NDJSON, a result per row, reruns record nothing new."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from services.registration.api.common import App, Now, acting_partner, rule_problem
from services.registration.api.contracts import ContractRequest
from services.registration.api.registrations import RegistrationRequest
from services.registration.domain.engagement import RegistrationRuleError
from services.registration.import_lookups import BatchLookups
from services.registration.importer import Importer, RowOutcome
from shared.auth import Allow, Principal, Role
from shared.edge import DocumentTooLargeError, parse_json
from shared.problems import Problem, problems

imports = APIRouter(prefix="/v1/imports", tags=["imports"])

IMPORT_BODY_LIMIT = 50 * 1024 * 1024
"""Bytes of an import: some 200,000 rows."""
IMPORT_LINE_LIMIT = 64 * 1024
"""Characters of one line of an import. A row's own fields take at most 4 KiB; a CRM's export may
carry other columns, which are ignored, but a line this long is not a row."""
M = TypeVar("M", bound=BaseModel)
Importing = Annotated[
    Principal, Depends(Allow(Role.ADMIN, Role.CHANNEL_MANAGER, Role.CRM, Role.PARTNER))
]
ContractImporting = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.CRM))]


class RowResult(BaseModel):
    line: int
    status: str = Field(
        description="recorded; unchanged (its CRM id names this partner's registration already, "
        "recorded before or on an earlier line: `id` names it); or rejected (`problem` says why, "
        "as a request of its own would be answered)"
    )
    id: UUID | None = None
    registration_status: str | None = None
    problem: dict[str, Any] | None = None


class ImportReport(BaseModel):
    rows: int
    recorded: int
    unchanged: int
    rejected: int
    results: list[RowResult]


def _csv_registration(row: dict[str, str]) -> dict[str, Any]:
    return {
        "partner_id": row.get("partner_id") or None,
        "customer": {
            "name": row.get("customer_name", ""),
            "country": row.get("customer_country", ""),
            "domain": row.get("customer_domain") or None,
            "email": row.get("customer_email") or None,
        },
        "product_line": row.get("product_line", ""),
        "motion": row.get("motion", ""),
        "estimated_value": {
            "amount": row.get("estimated_amount", ""),
            "currency": row.get("currency", ""),
        },
        "expected_close": row.get("expected_close", ""),
        "external_id": row.get("external_id") or None,
    }


def _csv_contract(row: dict[str, str]) -> dict[str, Any]:
    customer = None
    if row.get("customer_name"):
        customer = {
            "name": row["customer_name"],
            "country": row.get("customer_country", ""),
            "domain": row.get("customer_domain") or None,
            "email": row.get("customer_email") or None,
        }
    one_time = None
    if row.get("one_time_amount"):
        one_time = {"amount": row["one_time_amount"], "currency": row.get("currency", "")}
    return {
        "registration_id": row.get("registration_id") or None,
        "partner_id": row.get("partner_id") or None,
        "customer": customer,
        "start_date": row.get("start_date", ""),
        "term_months": row.get("term_months") or 12,
        "mrr": {"amount": row.get("mrr_amount", ""), "currency": row.get("currency", "")},
        "one_time": one_time,
        "external_id": row.get("external_id") or None,
    }


CSV_PATTERN = r"^([^\r\u0000]|\r\n)*\r?\n[^\r\n\u0000]*[^\s\u0000]([^\r\u0000]|\r\n)*$"
IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            # a header line and at least one row under it; lines end with LF or CRLF
            "text/csv": {"schema": {"type": "string", "pattern": CSV_PATTERN}},
            # at least one line that is not blank: a JSON object per row
            "application/x-ndjson": {"schema": {"type": "string", "pattern": r"\S"}},
        },
    }
}


def _rows(
    body: bytes, content_type: str, from_csv: Callable[[dict[str, str]], dict[str, Any]]
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, the row as a request body, or why it cannot be read). A row that breaks a
    rule is rejected by its line; a file that cannot be read, or breaks a limit, is refused whole
    before any row is recorded."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Problem(400, "bad-encoding", "The file is not UTF-8.") from error
    if content_type.startswith("text/csv"):
        _refuse_long_lines(text)
        reader = csv.DictReader(io.StringIO(text))
        try:
            for record in reader:
                row = {k: (v or "").strip() for k, v in record.items() if k}
                yield reader.line_num, from_csv(row)
        except csv.Error as error:
            raise Problem(
                422,
                "unreadable-csv",
                f"Line {reader.line_num + 1} cannot be read as CSV ({error}). Lines end with LF"
                " or CRLF (RFC 4180); a field that holds a line break is quoted.",
                line=reader.line_num + 1,
            ) from error
        return
    if content_type.startswith(("application/x-ndjson", "application/jsonl")):
        _refuse_long_lines(text)
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed = parse_json(line)
            except json.JSONDecodeError as error:
                yield number, f"not JSON: {error.msg}"
                continue
            except DocumentTooLargeError as error:
                raise Problem(
                    422, "too-deeply-nested", f"Line {number} is {error}.", line=number
                ) from error
            yield number, parsed if isinstance(parsed, dict) else "not a JSON object"
        return
    raise Problem(
        415,
        "unsupported-media-type",
        "Send text/csv or application/x-ndjson.",
        accepted=["text/csv", "application/x-ndjson"],
    )


class ImportedRegistration(RegistrationRequest):
    """A row of a registration import: a partner's own file may leave its id out."""

    partner_id: UUID | None = None  # type: ignore[assignment]


def _refuse_empty(good: list[Any], bad: list[RowResult]) -> None:
    if not good and not bad:
        raise Problem(
            422,
            "empty-import",
            "The file holds no row: a CSV has a header line and a row under it; NDJSON a JSON"
            " object per line.",
        )


def _parse(
    rows: Iterator[tuple[int, dict[str, Any] | str]], model: type[M]
) -> tuple[list[tuple[int, M]], list[RowResult]]:
    good: list[tuple[int, M]] = []
    bad: list[RowResult] = []
    for line, row in rows:
        if isinstance(row, str):
            bad.append(_rejected(line, "unreadable-row", row))
            continue
        try:
            parsed = model.model_validate(row)
        except ValidationError as error:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            bad.append(_rejected(line, "validation-error", detail))
            continue
        if not getattr(parsed, "external_id", None):
            bad.append(
                _rejected(line, "validation-error", "external_id: an imported row needs its CRM id")
            )
            continue
        good.append((line, parsed))
    return good, bad


def _rejected(line: int, kind: str, detail: str) -> RowResult:
    return RowResult(
        line=line, status="rejected", problem={"type": f"/problems/{kind}", "detail": detail}
    )


def _as_request(error: RegistrationRuleError) -> dict[str, Any]:
    """A row's problem as the same registration sent alone would be answered."""
    problem = rule_problem(error)
    return {"type": f"/problems/{problem.kind}", "detail": problem.detail, **problem.extensions}


def _report(outcomes: list[RowOutcome], bad: list[RowResult]) -> ImportReport:
    results = bad + [
        RowResult(
            line=o.line,
            status=o.status,
            id=o.entity_id,
            registration_status=o.registration_status,
            problem=None if o.problem is None else _as_request(o.problem),
        )
        for o in outcomes
    ]
    results.sort(key=lambda r: r.line)
    count = {
        s: sum(1 for r in results if r.status == s) for s in ("recorded", "unchanged", "rejected")
    }
    return ImportReport(rows=len(results), results=results, **count)


def _refuse_long_lines(text: str) -> None:
    """413 naming the first line longer than ``IMPORT_LINE_LIMIT`` (lines end with CR or LF)."""
    if len(text) <= IMPORT_LINE_LIMIT:
        return
    long_line = re.search(f"[^\r\n]{{{IMPORT_LINE_LIMIT + 1}}}", text)
    if long_line is not None:
        number = len(re.findall("\r\n|\r|\n", text[: long_line.start()])) + 1
        raise Problem(
            413,
            "line-too-long",
            f"Line {number} is longer than {IMPORT_LINE_LIMIT} characters.",
            line=number,
            limit=IMPORT_LINE_LIMIT,
        )


@imports.post(
    "/registrations",
    response_model=ImportReport,
    max_body_size=IMPORT_BODY_LIMIT,
    summary="Import registrations (CSV or NDJSON); a result per row",
    openapi_extra=IMPORT_BODY,
    responses=problems(415),
)
async def import_registrations(
    request: Request, app: App, now: Now, principal: Importing
) -> ImportReport:
    rows = _rows(await request.body(), request.headers.get("content-type", ""), _csv_registration)
    good, bad = _parse(rows, ImportedRegistration)
    _refuse_empty(good, bad)
    commands = []
    for line, parsed in good:
        try:
            commands.append((line, parsed.command(acting_partner(principal, parsed.partner_id))))
        except Problem as problem:
            bad.append(_rejected(line, problem.kind, problem.detail))
    importer = Importer(app, BatchLookups.of(app.customers))
    outcomes = await run_in_threadpool(importer.registrations, commands, now)
    return _report(outcomes, bad)


@imports.post(
    "/contracts",
    response_model=ImportReport,
    max_body_size=IMPORT_BODY_LIMIT,
    summary="Import signed contracts (CSV or NDJSON); a result per row",
    openapi_extra=IMPORT_BODY,
    responses=problems(415),
)
async def import_contracts(
    request: Request, app: App, now: Now, _: ContractImporting
) -> ImportReport:
    rows = _rows(await request.body(), request.headers.get("content-type", ""), _csv_contract)
    good, bad = _parse(rows, ContractRequest)
    _refuse_empty(good, bad)
    outcomes = await run_in_threadpool(
        Importer(app).contracts, [(line, parsed.command()) for line, parsed in good], now
    )
    return _report(outcomes, bad)
