"""Registration's read models: the partner directory (from tiering), deals and contracts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow

from services.registration.domain import RENEWAL_WINDOW, Contract, KnownPartner, Registration
from shared.contracts import PartnerEnrolled
from shared.projections import View, on


class PartnerDirectoryView(View):
    name = "registration_partner_directory"
    tables = ("registration_partners",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.registration_partners ("
        " partner_id uuid PRIMARY KEY, legal_name text NOT NULL, motions text[] NOT NULL,"
        " function text NOT NULL)",
    )

    @on(PartnerEnrolled)
    def _enrolled(self, curs: Cursor[DictRow], event: PartnerEnrolled) -> None:
        curs.execute(
            self.statement("INSERT INTO {schema}.registration_partners VALUES (%s,%s,%s,%s)"),
            (event.partner_id, event.legal_name, event.motions, event.function),
        )

    def get(self, partner_id: UUID) -> KnownPartner | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT partner_id, legal_name, motions, function"
                    " FROM {schema}.registration_partners WHERE partner_id = %s"
                ),
                (partner_id,),
            )
            row = curs.fetchone()
        if row is None:
            return None
        return KnownPartner(
            partner_id=row["partner_id"],
            legal_name=row["legal_name"],
            motions=tuple(row["motions"]),
            function=row["function"],
        )


class CatchingUpDirectory:
    """Reads the directory; on a miss, first lets it catch up with tiering's log, so a partner
    enrolled a moment ago can register at once."""

    def __init__(self, view: PartnerDirectoryView, catch_up: Callable[[], None]) -> None:
        self.view = view
        self.catch_up = catch_up

    def get(self, partner_id: UUID) -> KnownPartner | None:
        partner = self.view.get(partner_id)
        if partner is None:
            self.catch_up()
            partner = self.view.get(partner_id)
        return partner


class DealsView(View):
    name = "registration_deals"
    tables = ("registration_deals",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.registration_deals ("
        " registration_id uuid PRIMARY KEY, partner_id uuid NOT NULL,"
        " customer_key text NOT NULL, customer_name text NOT NULL, country text NOT NULL,"
        " product_line text NOT NULL, motion text NOT NULL, estimated_amount numeric NOT NULL,"
        " currency text NOT NULL, expected_close date NOT NULL, external_id text,"
        " status text NOT NULL, protected_until date, registered_at timestamptz NOT NULL)",
        "CREATE INDEX IF NOT EXISTS registration_deals_partner"
        " ON {schema}.registration_deals (partner_id, registration_id)",
        "CREATE INDEX IF NOT EXISTS registration_deals_external"
        " ON {schema}.registration_deals (external_id)",
    )

    @on(Registration.Registered)
    def _registered(self, curs: Cursor[DictRow], event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.registration_deals VALUES"
                " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            ),
            (
                event.originator_id,
                event.partner_id,
                event.customer_key,
                event.customer_name,
                event.country,
                event.product_line,
                event.motion,
                event.estimated_value.amount,
                event.estimated_value.currency,
                event.expected_close,
                event.external_id,
                event.status,
                event.protected_until,
                event.timestamp,
            ),
        )


class ContractsView(View):
    name = "registration_contracts"
    tables = ("registration_contracts",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.registration_contracts ("
        " contract_id uuid PRIMARY KEY, customer_key text NOT NULL, partner_id uuid,"
        " registration_id uuid, start_date date NOT NULL, term_months integer NOT NULL,"
        " end_date date NOT NULL, mrr numeric NOT NULL, currency text NOT NULL,"
        " external_id text, renewal_due_on date NOT NULL, renewal_due_raised_for date)",
        "CREATE INDEX IF NOT EXISTS registration_contracts_due"
        " ON {schema}.registration_contracts (renewal_due_on)",
    )

    @on(Contract.Signed)
    def _signed(self, curs: Cursor[DictRow], event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.registration_contracts VALUES"
                " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,NULL)"
            ),
            (
                event.originator_id,
                event.customer_key,
                event.partner_id,
                event.registration_id,
                event.start_date,
                event.term_months,
                event.end_date,
                event.mrr.amount,
                event.mrr.currency,
                event.external_id,
                event.end_date - RENEWAL_WINDOW,
            ),
        )

    @on(Contract.RenewalDueRaised)
    def _renewal_due(self, curs: Cursor[DictRow], event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.registration_contracts SET renewal_due_raised_for = %s"
                " WHERE contract_id = %s"
            ),
            (event.end_date, event.originator_id),
        )

    def renewal_candidates(self, until: date) -> Sequence[UUID]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT contract_id FROM {schema}.registration_contracts"
                    " WHERE renewal_due_on <= %s"
                    " AND renewal_due_raised_for IS DISTINCT FROM end_date"
                    " ORDER BY contract_id"
                ),
                (until,),
            )
            return [row["contract_id"] for row in curs.fetchall()]
