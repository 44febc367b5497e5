"""What-if (issue 8): the history replayed under a draft policy document, for program admins.
Tiering replays the tiers, then asks commissions for the statements (the caller's token goes
along); nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Literal

import httpx
from asgi_correlation_id import correlation_id
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from services.tiering.api.common import Admin
from services.tiering.api.program import POLICY_DOCUMENT_BODY, policy_sent
from services.tiering.whatif import TieringWhatIf, WhatIfReport, compose_report, report_csv
from shared.dependencies import Runtime
from shared.problems import Problem, problems
from shared.whatif import (
    DraftCurrencyError,
    DraftPolicy,
    StatementsWhatIf,
    StatementsWhatIfRequest,
)

what_if = APIRouter(prefix="/v1/program", tags=["program"])

COMMISSIONS_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
"""A what-if replays commissions' whole history: it may take a while, but not forever."""


def commissions_client(runtime: Runtime) -> Iterator[httpx.Client]:
    """The commissions service, where the settings say it listens."""
    with httpx.Client(
        base_url=runtime.settings.commissions_url, timeout=COMMISSIONS_TIMEOUT
    ) as client:
        yield client


Commissions = Annotated[httpx.Client, Depends(commissions_client)]


def ask_commissions(
    client: httpx.Client, body: StatementsWhatIfRequest, authorization: str
) -> StatementsWhatIf:
    """Commissions' part of the what-if: its statements under the tier changes tiering's replay
    decided, and the draft."""
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    request_id = correlation_id.get()
    if request_id:
        headers["X-Request-ID"] = request_id
    try:
        response = client.post("/v1/what-if", content=body.model_dump_json(), headers=headers)
    except httpx.TransportError as error:
        raise Problem(
            503,
            "commissions-unavailable",
            f"The commissions service cannot be reached at {client.base_url} ({error}); "
            "a what-if needs it for the statements. Try again when it is up.",
        ) from error
    if response.status_code >= 500:
        raise Problem(
            503,
            "commissions-unavailable",
            f"The commissions service failed its part of the what-if "
            f"({response.status_code}); try again later.",
        )
    if response.status_code >= 400:
        raise Problem(
            response.status_code,
            "commissions-refused",
            f"The commissions service refused its part of the what-if: {_detail(response)}",
        )
    return StatementsWhatIf.model_validate_json(response.content)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:  # not a problem document
        return response.text


@what_if.post(
    "/what-if",
    response_model=WhatIfReport,
    summary="Replay the history under a draft policy: tier and statement differences",
    description="Send the draft as `application/yaml` or `application/json` (the document "
    "`POST /v1/program/policy` adopts). Without `effective_on` the draft replaces every "
    "version from the beginning; with it, versions before that day stay. Per partner: the "
    "tier changes and the statements that would differ. `Accept: text/csv` or `format=csv` "
    "for one flat table. Nothing is written.",
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}},
        503: {"description": "The commissions service cannot be reached"},
        **problems(415),
    },
    openapi_extra=POLICY_DOCUMENT_BODY,
)
async def run_what_if(
    request: Request,
    runtime: Runtime,
    _: Admin,
    commissions: Commissions,
    effective_on: Annotated[
        date | None,
        Query(description="The draft's first day; default: it replaces every version"),
    ] = None,
    report_format: Annotated[
        Literal["json", "csv"] | None,
        Query(alias="format", description="Else from Accept (text/csv), else JSON"),
    ] = None,
) -> Response:
    draft = DraftPolicy(await policy_sent(request), effective_on)
    try:
        tiers = await run_in_threadpool(TieringWhatIf.of(runtime).run, draft)
    except DraftCurrencyError as error:
        raise Problem(422, "policy-rejected", str(error)) from error
    statements = await run_in_threadpool(
        ask_commissions,
        commissions,
        tiers.statements_request(),
        request.headers["authorization"],
    )
    report = compose_report(tiers, statements)
    wanted = report_format or ("csv" if "text/csv" in request.headers.get("accept", "") else "json")
    if wanted == "csv":
        return Response(
            report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="what-if.csv"'},
        )
    return Response(report.model_dump_json(), media_type="application/json")
