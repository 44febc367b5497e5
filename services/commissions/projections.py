"""Commissions' read models: partner tiers (from tiering) and commission lines (own log)."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.commissions.domain import CommissionLine
from shared.contracts import TierChanged
from shared.projections import View, on


class TiersView(View):
    name = "commissions_tiers"
    tables = ("commissions_partner_tiers",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.commissions_partner_tiers ("
        " partner_id uuid NOT NULL, motion text NOT NULL, tier text NOT NULL,"
        " effective_on date NOT NULL, PRIMARY KEY (partner_id, motion))",
    )

    @on(TierChanged)
    def _tier_changed(self, curs: Cursor[DictRow], event: TierChanged) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.commissions_partner_tiers VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (partner_id, motion) DO UPDATE"
                " SET tier = excluded.tier, effective_on = excluded.effective_on"
            ),
            (event.partner_id, event.motion, event.tier, event.effective_on),
        )


class LinesView(View):
    name = "commissions_lines"
    tables = ("commissions_lines",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.commissions_lines ("
        " line_id uuid PRIMARY KEY, partner_id uuid NOT NULL, contract_id uuid NOT NULL,"
        " customer_key text NOT NULL, period text NOT NULL, rule text NOT NULL,"
        " rate numeric NOT NULL, base_amount numeric NOT NULL, amount numeric NOT NULL,"
        " currency text NOT NULL, caused_by jsonb NOT NULL, accrued_at timestamptz NOT NULL)",
        "CREATE INDEX IF NOT EXISTS commissions_lines_partner"
        " ON {schema}.commissions_lines (partner_id, period, line_id)",
    )

    @on(CommissionLine.Accrued)
    def _accrued(self, curs: Cursor[DictRow], event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.commissions_lines VALUES"
                " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            ),
            (
                event.originator_id,
                event.partner_id,
                event.contract_id,
                event.customer_key,
                event.period,
                event.rule,
                event.rate,
                event.base.amount,
                event.amount.amount,
                event.amount.currency,
                Jsonb(event.caused_by),
                event.timestamp,
            ),
        )
