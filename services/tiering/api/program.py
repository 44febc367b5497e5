"""The program's policy (a versioned YAML or JSON document) and its monthly exchange rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.tiering.api.common import Admin, Staff, Tiering, Today
from services.tiering.domain.program import PolicyChangeError, PolicyConflictError
from shared.auth import Allow, Principal, Role
from shared.edge import RequestModel
from shared.money import Currency, decimal_text
from shared.policy import PolicyDocumentError, PolicyVersion, ProgramPolicy, parse_policy
from shared.problems import Problem, problems
from shared.program_dates import ProgramDate

program = APIRouter(prefix="/v1/program", tags=["program"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")

POLICY_DOCUMENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
"""The OpenAPI of a request whose body is a policy document."""


async def policy_sent(request: Request) -> ProgramPolicy:
    """The policy document a request carries, as YAML or JSON: 415 for another media type,
    422 (with the path of each problem) for one that cannot be read or is not valid."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (*YAML_TYPES, "application/json"):
        raise Problem(
            415,
            "unsupported-media-type",
            "Send the policy document as application/yaml or application/json.",
        )
    try:
        return parse_policy(await request.body(), media_type=media_type)
    except PolicyDocumentError as error:
        raise Problem(422, "policy-rejected", str(error)) from error


class VersionSummary(BaseModel):
    version: int
    effective_on: date | None = Field(description="None for the defaults, in force from the start")
    adopted_by: str
    note: str

    @classmethod
    def of(cls, version: PolicyVersion) -> VersionSummary:
        return cls(
            version=version.version,
            effective_on=None if version.effective_on == date.min else version.effective_on,
            adopted_by=version.adopted_by,
            note=version.note,
        )


class PolicyVersions(BaseModel):
    in_force: VersionSummary
    versions: list[VersionSummary]


@program.get(
    "/policy", response_model=PolicyVersions, summary="Policy versions, and which is in force"
)
def policy_versions(app: Tiering, today: Today, _: Staff) -> PolicyVersions:
    current = app.program()
    return PolicyVersions(
        in_force=VersionSummary.of(current.version_on(today)),
        versions=[VersionSummary.of(v) for v in current.versions],
    )


@program.get(
    "/policy/{version}",
    summary="One version's document (JSON, or YAML when asked for with Accept)",
    responses={200: {"content": {"application/json": {}, "application/yaml": {}}}},
)
def policy_document(version: int, request: Request, app: Tiering, _: Staff) -> Response:
    found = [v for v in app.program().versions if v.version == version]
    if not found:
        raise Problem(404, "policy-version-not-found", f"No policy version {version}.")
    document: dict[str, Any] = found[0].policy.model_dump(mode="json")
    if any(t in request.headers.get("accept", "") for t in YAML_TYPES):
        return Response(yaml.safe_dump(document, sort_keys=False), media_type="application/yaml")
    return Response(found[0].policy.model_dump_json(indent=2), media_type="application/json")


@program.post(
    "/policy",
    status_code=201,
    response_model=VersionSummary,
    summary="Adopt a new policy version from a day on",
    openapi_extra=POLICY_DOCUMENT_BODY,
    responses=problems(415),
)
async def adopt_policy(
    request: Request,
    app: Tiering,
    today: Today,
    admin: Admin,
    effective_on: Annotated[
        ProgramDate, Query(description="The first day the version is in force")
    ],
    note: Annotated[str, Query(max_length=500)] = "",
) -> VersionSummary:
    policy = await policy_sent(request)
    try:
        version = await run_in_threadpool(
            app.adopt_policy,
            policy,
            effective_on=effective_on,
            today=today,
            by=admin.subject,
            note=note,
        )
    except PolicyChangeError as error:
        raise Problem(422, "policy-rejected", str(error)) from error
    return VersionSummary.of(version)


Rate = decimal_text(12, 12, positive=True)


class RatesRequest(RequestModel):
    month: date = Field(description="Any day of the month the rates are for")
    rates: dict[Currency, Rate] = Field(  # type: ignore[valid-type]
        min_length=1,
        description="Currency code: worth of one unit in the reporting currency",
        examples=[{"EUR": "1.08", "GBP": "1.27"}],
    )


class MonthRates(BaseModel):
    month: date
    rates: dict[str, Decimal]


class PublishedRates(BaseModel):
    reporting_currency: str
    months: list[MonthRates]


Treasurer = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.FINANCE))]


@program.post(
    "/rates", status_code=201, response_model=PublishedRates, summary="Publish a month's rates"
)
async def publish_rates(
    body: RatesRequest, app: Tiering, today: Today, who: Treasurer
) -> PublishedRates:
    try:
        current = await run_in_threadpool(
            app.publish_rates, month=body.month, rates=body.rates, by=who.subject, today=today
        )
    except PolicyConflictError as error:
        raise Problem(409, "rates-conflict", str(error)) from error
    except PolicyChangeError as error:
        raise Problem(422, "rates-rejected", str(error)) from error
    return _rates(current.rates, current.policy_on(today).reporting_currency)


@program.get("/rates", response_model=PublishedRates, summary="Rates published, by month")
def published_rates(app: Tiering, today: Today, _: Staff) -> PublishedRates:
    current = app.program()
    return _rates(current.rates, current.policy_on(today).reporting_currency)


def _rates(rates: dict[date, dict[str, Decimal]], currency: str) -> PublishedRates:
    return PublishedRates(
        reporting_currency=currency,
        months=[MonthRates(month=m, rates=r) for m, r in sorted(rates.items())],
    )
