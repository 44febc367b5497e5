"""Tiering's read models: the member register (from its own log) and partner activity (from
registration's log)."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from services.tiering.domain.partners import Partner
from shared.contracts import DealRegistered
from shared.projections import View, on


class MembersView(View):
    name = "tiering_members"
    tables = ("tiering_partners", "tiering_partner_tiers")
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.tiering_partners ("
        " partner_id uuid PRIMARY KEY, legal_name text NOT NULL, home_country text NOT NULL,"
        " regions text[] NOT NULL, motions text[] NOT NULL, function text NOT NULL,"
        " category text NOT NULL, management text NOT NULL, enrolled_at timestamptz NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {schema}.tiering_partner_tiers ("
        " partner_id uuid NOT NULL, motion text NOT NULL, tier text NOT NULL,"
        " since date NOT NULL, PRIMARY KEY (partner_id, motion))",
    )

    @on(Partner.Enrolled)
    def _enrolled(self, curs: Cursor[DictRow], event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.tiering_partners VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            ),
            (
                event.originator_id,
                event.legal_name,
                event.home_country,
                event.regions,
                event.motions,
                event.function,
                event.category,
                event.management,
                event.timestamp,
            ),
        )

    @on(Partner.TierChanged)
    def _tier_changed(self, curs: Cursor[DictRow], event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.tiering_partner_tiers VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (partner_id, motion) DO UPDATE"
                " SET tier = excluded.tier, since = excluded.since"
            ),
            (event.originator_id, event.motion, event.tier, event.effective_on),
        )


class ActivityView(View):
    name = "tiering_activity"
    tables = ("tiering_partner_activity",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.tiering_partner_activity ("
        " partner_id uuid PRIMARY KEY, registrations integer NOT NULL,"
        " last_registered_at timestamptz NOT NULL)",
    )

    @on(DealRegistered)
    def _registered(self, curs: Cursor[DictRow], event: DealRegistered) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.tiering_partner_activity VALUES (%s, 1, %s)"
                " ON CONFLICT (partner_id) DO UPDATE SET"
                " registrations = tiering_partner_activity.registrations + 1,"
                " last_registered_at = greatest("
                "   tiering_partner_activity.last_registered_at, excluded.last_registered_at)"
            ),
            (event.partner_id, event.occurred_at),
        )
