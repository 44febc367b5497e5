"""Monthly statements per partner, their lines, and the CSV finance exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from services.commissions.api.common import (
    LINE_COLUMNS,
    PERIOD_PATTERN,
    LineView,
    PeriodQuery,
    Reader,
    amounts,
    line_view,
    own_partner,
)
from shared.money import Amount
from shared.paging import decode_cursor, encode_cursor
from shared.problems import Problem
from shared.web import Pool

statements = APIRouter(prefix="/v1/statements", tags=["statements"])


class StatementSummary(BaseModel):
    statement_id: UUID
    partner_id: UUID
    period: str
    status: str
    """``open`` while its month runs (amounts so far), ``issued`` once closed (never changes)."""
    lines: int
    carried_in: list[Amount]
    totals: list[Amount]
    payable: list[Amount]
    carried_out: list[Amount]
    issued_at: datetime | None


class StatementDetail(StatementSummary):
    line_items: list[LineView]


class StatementPage(BaseModel):
    statements: list[StatementSummary]
    next_cursor: str | None


_SUMMARY = (
    "SELECT s.statement_id, s.partner_id, s.period, s.issued, s.lines, s.carried_in,"
    " coalesce(s.totals, running.totals) AS totals, s.payable, s.carried_out, s.issued_at"
    " FROM commissions_statements s LEFT JOIN LATERAL ("
    "  SELECT jsonb_object_agg(currency, total) AS totals FROM ("
    "   SELECT currency, sum(amount)::text AS total FROM commissions_lines l"
    "   WHERE l.statement_id = s.statement_id GROUP BY currency) per_currency"
    " ) running ON NOT s.issued"
)


def _summary(row: Any) -> dict[str, Any]:
    return {
        "statement_id": row["statement_id"],
        "partner_id": row["partner_id"],
        "period": row["period"],
        "status": "issued" if row["issued"] else "open",
        "lines": row["lines"],
        "carried_in": amounts(row["carried_in"]),
        "totals": amounts(row["totals"]),
        "payable": amounts(row["payable"]),
        "carried_out": amounts(row["carried_out"]),
        "issued_at": row["issued_at"],
    }


@statements.get("", response_model=StatementPage, summary="Statements, by month then partner")
async def list_statements(
    pool: Pool,
    principal: Reader,
    partner_id: UUID | None = None,
    period: PeriodQuery = None,
    status: Annotated[str | None, Query(pattern="^(open|issued)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> StatementPage:
    partner_id = own_partner(principal, partner_id)
    after = decode_cursor(cursor, 2)
    rows = await pool.fetch(
        _SUMMARY + " WHERE ($1::uuid IS NULL OR s.partner_id = $1)"
        " AND ($2::text IS NULL OR s.period = $2)"
        " AND ($3::text IS NULL OR s.issued = ($3 = 'issued'))"
        " AND ($4::text IS NULL OR (s.period, s.partner_id::text) > ($4, $5))"
        " ORDER BY s.period, s.partner_id::text LIMIT $6",
        partner_id,
        period,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
    )
    page = [StatementSummary(**_summary(row)) for row in rows[:limit]]
    last = page[-1] if page else None
    more = len(rows) > limit and last is not None
    return StatementPage(
        statements=page,
        next_cursor=encode_cursor(last.period, last.partner_id) if more and last else None,
    )


@statements.get(
    "/export",
    summary="Every line of a month's statements, as CSV for finance",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_lines(
    pool: Pool,
    principal: Reader,
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, examples=["2027-01"])],
    partner_id: UUID | None = None,
) -> StreamingResponse:
    partner_id = own_partner(principal, partner_id)
    rows = await pool.fetch(
        f"SELECT {LINE_COLUMNS} FROM commissions_lines"  # noqa: S608 (constant columns; values bound)
        " WHERE period = $1 AND ($2::uuid IS NULL OR partner_id = $2)"
        " ORDER BY partner_id, seq",
        period,
        partner_id,
    )
    return StreamingResponse(
        _csv(line_view(row) for row in rows),
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="commissions-{period}.csv"'},
    )


CSV_COLUMNS = (
    "statement_period",
    "partner_id",
    "line_id",
    "earned_in",
    "rule",
    "rate",
    "base_amount",
    "amount",
    "currency",
    "contract_id",
    "customer_key",
    "corrects",
    "caused_by",
    "explanation",
)


def _csv(lines: Iterator[LineView]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        writer.writerow(
            (
                line.statement_period,
                line.partner_id,
                line.line_id,
                line.earned_in,
                line.rule,
                line.rate,
                line.base.amount,
                line.amount.amount,
                line.amount.currency,
                line.contract_id,
                line.customer_key,
                line.corrects or "",
                " ".join(line.caused_by),
                line.explanation,
            )
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


@statements.get(
    "/{partner_id}/{period}",
    response_model=StatementDetail,
    summary="One partner's statement for a month, every line with its rule and causes",
)
async def get_statement(
    partner_id: UUID,
    period: Annotated[str, Path(pattern=PERIOD_PATTERN, examples=["2027-01"])],
    pool: Pool,
    principal: Reader,
) -> StatementDetail:
    own_partner(principal, partner_id)
    row = await pool.fetchrow(
        _SUMMARY + " WHERE s.partner_id = $1 AND s.period = $2", partner_id, period
    )
    if row is None:
        raise Problem(
            404,
            "statement-not-found",
            f"Partner {partner_id} has no statement for {period}: nothing was earned or "
            "corrected in that month.",
        )
    lines = await pool.fetch(
        f"SELECT {LINE_COLUMNS} FROM commissions_lines WHERE statement_id = $1 ORDER BY seq",  # noqa: S608
        row["statement_id"],
    )
    return StatementDetail(**_summary(row), line_items=[line_view(line) for line in lines])
