"""Monthly statements per partner, their lines, and the CSV finance exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from services.commissions.api.common import (
    LINE_COLUMNS,
    PERIOD_PATTERN,
    Commissions,
    LineView,
    PeriodQuery,
    Reader,
    amounts,
    line_view,
    own_partner,
)
from services.commissions.domain.statements import Statement
from shared.audit.api import AsOf
from shared.dependencies import Pool
from shared.money import Amount
from shared.paging import Cursor, decode_cursor, encode_cursor
from shared.problems import Problem

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
    cursor: Cursor = None,
) -> StatementPage:
    partner_id = own_partner(principal, partner_id)
    after = decode_cursor(cursor, str, str)
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
    app: Commissions,
    principal: Reader,
    as_of: AsOf = None,
) -> StatementDetail:
    own_partner(principal, partner_id)
    if as_of is not None:
        recorded = await run_in_threadpool(app.statement, partner_id, period, as_of=as_of)
        if recorded is None:
            raise Problem(
                404,
                "statement-not-found",
                f"Partner {partner_id} had no statement for {period} as of {as_of.isoformat()}.",
            )
        return statement_as_recorded(recorded)
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


def statement_as_recorded(statement: Statement) -> StatementDetail:
    """The statement from its own events (as of an instant), in the shape the ledger shows."""
    issued = statement.issued

    def listed(per_currency: dict[str, Decimal]) -> list[Amount]:
        return [Amount(amount=a, currency=c) for c, a in sorted(per_currency.items())]

    return StatementDetail(
        statement_id=statement.id,
        partner_id=statement.partner_id,
        period=statement.period,
        status="issued" if issued else "open",
        lines=len(statement.lines),
        carried_in=listed(issued.carried_in) if issued else [],
        totals=listed(issued.totals if issued else statement.totals()),
        payable=listed(issued.payable) if issued else [],
        carried_out=listed(issued.carried_out) if issued else [],
        issued_at=statement.modified_on if issued else None,
        line_items=[
            LineView(
                line_id=line.line_id,
                statement_period=statement.period,
                earned_in=line.earned_in,
                rule=line.rule,
                rate=line.rate,
                base=Amount.of(line.base),
                amount=Amount.of(line.amount),
                contract_id=line.contract_id,
                customer_key=line.customer_key,
                explanation=line.explanation,
                caused_by=list(line.caused_by),
                corrects=line.corrects,
                partner_id=statement.partner_id,
            )
            for line in statement.lines
        ],
    )
