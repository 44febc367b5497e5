"""Commissions' read models: the ledger (statements, lines, contracts and when each earns
next) from its own log, and partner tiers from tiering's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from services.commissions.domain.contracts import Contract
from services.commissions.domain.statements import Statement
from shared.contracts import TierChanged
from shared.projections import Statements, View, on


class TiersView(View):
    name = "commissions_tiers"
    tables = ("commissions_partner_tiers",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.commissions_partner_tiers ("
        " partner_id uuid NOT NULL, motion text NOT NULL, tier text NOT NULL,"
        " effective_on date NOT NULL, PRIMARY KEY (partner_id, motion))",
    )

    @on(TierChanged)
    def _tier_changed(self, curs: Statements, event: TierChanged) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.commissions_partner_tiers VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (partner_id, motion) DO UPDATE"
                " SET tier = excluded.tier, effective_on = excluded.effective_on"
            ),
            (event.partner_id, event.motion, event.tier, event.effective_on),
        )


def _amounts(amounts: dict[str, Any]) -> Jsonb:
    return Jsonb({currency: str(amount) for currency, amount in amounts.items()})


class LedgerView(View):
    """Statements and their lines; contracts through partners, how each earns and the next
    month it has to earn (what the clock asks)."""

    name = "commissions_ledger"
    tables = ("commissions_statements", "commissions_lines", "commissions_contracts")
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.commissions_statements ("
        " statement_id uuid PRIMARY KEY, partner_id uuid NOT NULL, period text NOT NULL,"
        " issued boolean NOT NULL DEFAULT false, lines int NOT NULL DEFAULT 0,"
        " carried_in jsonb, totals jsonb, payable jsonb, carried_out jsonb,"
        " opened_at timestamptz NOT NULL, issued_at timestamptz)",
        "CREATE INDEX IF NOT EXISTS commissions_statements_partner"
        " ON {schema}.commissions_statements (partner_id, period)",
        "CREATE INDEX IF NOT EXISTS commissions_statements_open"
        " ON {schema}.commissions_statements (period) WHERE NOT issued",
        "CREATE TABLE IF NOT EXISTS {schema}.commissions_lines ("
        " line_id uuid PRIMARY KEY, statement_id uuid NOT NULL, partner_id uuid NOT NULL,"
        " period text NOT NULL, earned_in text NOT NULL, rule text NOT NULL,"
        " rate numeric NOT NULL, base_amount numeric NOT NULL, amount numeric NOT NULL,"
        " currency text NOT NULL, contract_id uuid NOT NULL, customer_key text NOT NULL,"
        " explanation text NOT NULL, caused_by jsonb NOT NULL, corrects uuid,"
        " entered_at timestamptz NOT NULL, seq bigint NOT NULL)",
        "CREATE INDEX IF NOT EXISTS commissions_lines_statement"
        " ON {schema}.commissions_lines (statement_id, seq)",
        "CREATE INDEX IF NOT EXISTS commissions_lines_partner"
        " ON {schema}.commissions_lines (partner_id, period, seq)",
        "CREATE INDEX IF NOT EXISTS commissions_lines_contract"
        " ON {schema}.commissions_lines (contract_id)",
        "CREATE TABLE IF NOT EXISTS {schema}.commissions_contracts ("
        " contract_id uuid PRIMARY KEY, partner_id uuid NOT NULL, customer_key text NOT NULL,"
        " motion text NOT NULL, rule text, rate numeric, explanation text,"
        " start_date date NOT NULL, cancelled_on date, next_due date)",
        "CREATE INDEX IF NOT EXISTS commissions_contracts_due"
        " ON {schema}.commissions_contracts (next_due) WHERE next_due IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS commissions_contracts_partner"
        " ON {schema}.commissions_contracts (partner_id)",
    )

    @on(Statement.Opened)  # type: ignore[attr-defined]
    def _statement_opened(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.commissions_statements"
                " (statement_id, partner_id, period, opened_at) VALUES (%s,%s,%s,%s)"
            ),
            (event.originator_id, event.partner_id, event.period, event.timestamp),
        )

    @on(Statement.LineEntered)  # type: ignore[attr-defined]
    def _line_entered(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.commissions_lines"
                " SELECT %s, s.statement_id, s.partner_id, s.period, %s,%s,%s,%s,%s,%s,%s,%s,%s,"
                " %s,%s,%s,%s FROM {schema}.commissions_statements s WHERE s.statement_id = %s"
            ),
            (
                event.line_id,
                event.earned_in,
                event.rule,
                event.rate,
                event.base.amount,
                event.amount.amount,
                event.amount.currency,
                event.contract_id,
                event.customer_key,
                event.explanation,
                Jsonb(event.caused_by),
                event.corrects,
                event.timestamp,
                event.originator_version,
                event.originator_id,
            ),
        )
        curs.execute(
            self.statement(
                "UPDATE {schema}.commissions_statements SET lines = lines + 1"
                " WHERE statement_id = %s"
            ),
            (event.originator_id,),
        )

    @on(Statement.Issued)  # type: ignore[attr-defined]
    def _issued(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.commissions_statements SET issued = true, carried_in = %s,"
                " totals = %s, payable = %s, carried_out = %s, issued_at = %s"
                " WHERE statement_id = %s"
            ),
            (
                _amounts(event.carried_in),
                _amounts(event.totals),
                _amounts(event.payable),
                _amounts(event.carried_out),
                event.timestamp,
                event.originator_id,
            ),
        )

    def statements_open(self, through: str) -> Sequence[UUID]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self.statement(
                    "SELECT statement_id FROM {schema}.commissions_statements"
                    " WHERE NOT issued AND period <= %s ORDER BY partner_id, period"
                ),
                (through,),
            )
            return [row["statement_id"] for row in curs.fetchall()]

    @on(Contract.Opened)  # type: ignore[attr-defined]
    def _contract_opened(self, curs: Statements, event: Any) -> None:
        earning = event.earning or {}
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.commissions_contracts VALUES"
                " (%s,%s,%s,%s,%s,%s,%s,%s,NULL,%s)"
            ),
            (
                event.originator_id,
                event.partner_id,
                event.customer_key,
                event.motion,
                earning.get("rule"),
                earning.get("rate"),
                earning.get("explanation"),
                event.start_date,
                event.next_due,
            ),
        )

    @on(Contract.LinePaid, Contract.Renewed)  # type: ignore[attr-defined]
    def _contract_next_due(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.commissions_contracts SET next_due = %s WHERE contract_id = %s"
            ),
            (event.next_due, event.originator_id),
        )

    @on(Contract.Cancelled)  # type: ignore[attr-defined]
    def _contract_cancelled(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.commissions_contracts SET next_due = %s, cancelled_on = %s"
                " WHERE contract_id = %s"
            ),
            (event.next_due, event.effective_on, event.originator_id),
        )

    def contracts_due(self, on: date) -> Sequence[UUID]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self.statement(
                    "SELECT contract_id FROM {schema}.commissions_contracts"
                    " WHERE next_due <= %s ORDER BY next_due, contract_id"
                ),
                (on,),
            )
            return [row["contract_id"] for row in curs.fetchall()]
