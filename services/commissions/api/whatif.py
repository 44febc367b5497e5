"""What-if (issue 8), commissions' part: tiering asks, with the tier changes its replay decided
under a draft policy; the statements are replayed and compared. Nothing is written."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from services.commissions.whatif import CommissionsWhatIf
from shared.dependencies import Admin, Runtime
from shared.policy import PolicyDocumentError, validate_policy
from shared.problems import Problem
from shared.whatif import DraftPolicy, StatementsWhatIf, StatementsWhatIfRequest

what_if = APIRouter(prefix="/v1", tags=["what-if"])

TIER_CHANGES_BODY_LIMIT = 128 * 1024 * 1024
"""Bytes. Tiering sends every tier change of the history it replayed (under 1 KiB each)."""


@what_if.post(
    "/what-if",
    response_model=StatementsWhatIf,
    max_body_size=TIER_CHANGES_BODY_LIMIT,
    summary="Statements replayed under a draft policy (tiering's what-if asks)",
    description="The statements of the whole history under the live policy and under the "
    "draft, with the tier changes tiering's replay decided under it; every statement whose "
    "lines differ, per currency. Program admins use tiering's `POST /v1/program/what-if`.",
)
async def statements_what_if(
    body: StatementsWhatIfRequest, runtime: Runtime, _: Admin
) -> StatementsWhatIf:
    try:
        draft = DraftPolicy(validate_policy(body.document), body.effective_on)
    except PolicyDocumentError as error:
        raise Problem(422, "policy-rejected", str(error)) from error
    engine = CommissionsWhatIf.of(runtime)
    return await run_in_threadpool(engine.compare, draft, body.tier_changes, body.read_through)
