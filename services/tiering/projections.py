"""Tiering's read models: the member register with tiers and their movements (from its own
log) and partner activity (from registration's log)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from services.tiering.domain.partners import Partner
from shared.contracts import ContractRenewed, ContractSigned, DealRegistered
from shared.projections import Statements, View, on


class MembersView(View):
    name = "tiering_members"
    tables = ("tiering_partners", "tiering_partner_tiers", "tiering_tier_changes")
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.tiering_partners ("
        " partner_id uuid PRIMARY KEY, legal_name text NOT NULL, home_country text NOT NULL,"
        " regions text[] NOT NULL, motions text[] NOT NULL, function text NOT NULL,"
        " category text NOT NULL, management text NOT NULL, enrolled_at timestamptz NOT NULL,"
        " inactive_at_review date, last_activity date, offboarded_on date)",
        "CREATE TABLE IF NOT EXISTS {schema}.tiering_partner_tiers ("
        " partner_id uuid NOT NULL, motion text NOT NULL, tier text NOT NULL,"
        " since date NOT NULL, quarters_below integer NOT NULL DEFAULT 0,"
        " PRIMARY KEY (partner_id, motion))",
        "CREATE INDEX IF NOT EXISTS tiering_partner_tiers_motion"
        " ON {schema}.tiering_partner_tiers (motion, tier)",
        "CREATE TABLE IF NOT EXISTS {schema}.tiering_tier_changes ("
        " partner_id uuid NOT NULL, motion text NOT NULL, previous_tier text, tier text NOT NULL,"
        " effective_on date NOT NULL, reason text NOT NULL, metrics jsonb NOT NULL,"
        " position bigserial PRIMARY KEY)",
        "CREATE INDEX IF NOT EXISTS tiering_tier_changes_day"
        " ON {schema}.tiering_tier_changes (effective_on, position)",
    )

    @on(Partner.Enrolled)
    def _enrolled(self, curs: Statements, event: Any) -> None:
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
    def _tier_changed(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.tiering_partner_tiers VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (partner_id, motion) DO UPDATE"
                " SET tier = excluded.tier, since = excluded.since"
            ),
            (event.originator_id, event.motion, event.tier, event.effective_on),
        )
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.tiering_tier_changes (partner_id, motion, previous_tier,"
                " tier, effective_on, reason, metrics) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            ),
            (
                event.originator_id,
                event.motion,
                event.previous_tier,
                event.tier,
                event.effective_on,
                event.reason,
                Jsonb({k: str(v) for k, v in event.metrics.items()}),
            ),
        )

    @on(Partner.MembershipChanged)
    def _membership_changed(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.tiering_partners SET motions = %s,"
                " offboarded_on = CASE WHEN %s THEN %s ELSE offboarded_on END"
                " WHERE partner_id = %s"
            ),
            (event.motions, event.offboarded, event.effective_on, event.originator_id),
        )
        if event.change == "addendum_terminated":
            curs.execute(
                self.statement(
                    "DELETE FROM {schema}.tiering_partner_tiers"
                    " WHERE partner_id = %s AND motion = %s"
                ),
                (event.originator_id, event.motion),
            )

    @on(Partner.RegionsChanged)  # type: ignore[attr-defined]
    def _regions_changed(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.tiering_partners SET regions = %s WHERE partner_id = %s"
            ),
            (event.regions, event.originator_id),
        )

    @on(Partner.FellBelowThreshold)  # type: ignore[attr-defined]
    def _fell_below(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.tiering_partner_tiers SET quarters_below = %s"
                " WHERE partner_id = %s AND motion = %s"
            ),
            (event.quarters, event.originator_id, event.motion),
        )

    @on(Partner.BackAboveThreshold)  # type: ignore[attr-defined]
    def _back_above(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.tiering_partner_tiers SET quarters_below = 0"
                " WHERE partner_id = %s AND motion = %s"
            ),
            (event.originator_id, event.motion),
        )

    @on(Partner.FlaggedInactive)  # type: ignore[attr-defined]
    def _inactive(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.tiering_partners SET inactive_at_review = %s, last_activity = %s"
                " WHERE partner_id = %s"
            ),
            (event.review_on, event.last_activity, event.originator_id),
        )

    @on(Partner.QuarterReviewed)  # type: ignore[attr-defined]
    def _reviewed(self, curs: Statements, event: Any) -> None:
        # A review that did not flag the partner clears an earlier flag.
        curs.execute(
            self.statement(
                "UPDATE {schema}.tiering_partners SET inactive_at_review = NULL"
                " WHERE partner_id = %s AND inactive_at_review < %s"
            ),
            (event.originator_id, event.review_on),
        )

    def ids(self) -> Sequence[UUID]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT partner_id FROM {schema}.tiering_partners"
                    " WHERE offboarded_on IS NULL ORDER BY 1"
                )
            )
            return [row["partner_id"] for row in curs.fetchall()]


class ActivityView(View):
    """Each registration a partner made, as registration published it (how active a partner
    is, now or as of any earlier program instant), and the contract terms reported before they
    start (the days the clock must look at the partner again)."""

    name = "tiering_activity_v3"
    tables = ("tiering_registrations", "tiering_terms_starting")
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.tiering_registrations ("
        " partner_id uuid NOT NULL, registration_id uuid NOT NULL,"
        " registered_at timestamptz NOT NULL, PRIMARY KEY (partner_id, registration_id))",
        "CREATE INDEX IF NOT EXISTS tiering_registrations_by_time"
        " ON {schema}.tiering_registrations (partner_id, registered_at)",
        "CREATE TABLE IF NOT EXISTS {schema}.tiering_terms_starting ("
        " starts_on date NOT NULL, partner_id uuid NOT NULL,"
        " PRIMARY KEY (starts_on, partner_id))",
    )

    @on(DealRegistered)
    def _registered(self, curs: Statements, event: DealRegistered) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.tiering_registrations VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING"
            ),
            (event.partner_id, event.registration_id, event.submitted_at),
        )

    @on(ContractSigned, ContractRenewed)
    def _term_reported(self, curs: Statements, event: ContractSigned | ContractRenewed) -> None:
        if event.partner_id is None or event.start_date <= event.reported_at.date():
            return
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.tiering_terms_starting VALUES (%s, %s) ON CONFLICT DO NOTHING"
            ),
            (event.start_date, event.partner_id),
        )

    def terms_starting(self, after: date, until: date) -> Sequence[tuple[date, UUID]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT starts_on, partner_id FROM {schema}.tiering_terms_starting"
                    " WHERE starts_on > %s AND starts_on <= %s ORDER BY starts_on, partner_id"
                ),
                (after, until),
            )
            return [(row["starts_on"], row["partner_id"]) for row in curs.fetchall()]

    def last_registered(self, partner_id: UUID) -> date | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT max(registered_at) AS last FROM {schema}.tiering_registrations"
                    " WHERE partner_id = %s"
                ),
                (partner_id,),
            )
            row = curs.fetchone()
        return row["last"].date() if row and row["last"] else None


class MemberRegister:
    """The application's ``Members``, over the two views."""

    def __init__(self, members: MembersView, activity: ActivityView) -> None:
        self.members = members
        self.activity = activity

    def ids(self) -> Sequence[UUID]:
        return self.members.ids()

    def last_registered(self, partner_id: UUID) -> date | None:
        return self.activity.last_registered(partner_id)

    def terms_starting(self, after: date, until: date) -> Sequence[tuple[date, UUID]]:
        return self.activity.terms_starting(after, until)
