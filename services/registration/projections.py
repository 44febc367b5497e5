"""Registration's read models: the partner directory (from tiering), deals and the review
queue, contracts. They also answer the application's questions that only flag (similar
customers, incumbency) and the clock's (what may expire or fall overdue)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from services.registration.domain.contracts import RENEWAL_WINDOW, Contract
from services.registration.domain.customers import CustomerIdentity, match_keys
from services.registration.domain.engagement import (
    APPROVED,
    EXPIRED,
    LOST,
    OPEN,
    PENDING_REVIEW,
    REJECTED,
    RETURNED,
    WITHDRAWN,
    WON,
    Incumbency,
)
from services.registration.domain.partners import KnownPartner
from services.registration.domain.registrations import Registration
from shared.contracts import PartnerEnrolled, PartnerMembershipChanged, TierChanged
from shared.projections import Statements, View, on


class PartnerDirectoryView(View):
    name = "registration_partner_directory"
    tables = ("registration_partners",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.registration_partners ("
        " partner_id uuid PRIMARY KEY, legal_name text NOT NULL, motions text[] NOT NULL,"
        " function text NOT NULL, tiers jsonb NOT NULL DEFAULT '{{}}',"
        " offboarded boolean NOT NULL DEFAULT false)",
        # Kept before tiers were: the column, empty until `dealreg rebuild registration`.
        "ALTER TABLE {schema}.registration_partners"
        " ADD COLUMN IF NOT EXISTS tiers jsonb NOT NULL DEFAULT '{{}}',"
        " ADD COLUMN IF NOT EXISTS offboarded boolean NOT NULL DEFAULT false",
    )

    @on(PartnerEnrolled)
    def _enrolled(self, curs: Statements, event: PartnerEnrolled) -> None:
        curs.execute(
            self.statement("INSERT INTO {schema}.registration_partners VALUES (%s,%s,%s,%s)"),
            (event.partner_id, event.legal_name, event.motions, event.function),
        )

    @on(PartnerMembershipChanged)
    def _membership_changed(self, curs: Statements, event: PartnerMembershipChanged) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.registration_partners SET motions = %s, offboarded = %s,"
                " tiers = CASE WHEN %s = 'addendum_terminated' THEN tiers - %s ELSE tiers END"
                " WHERE partner_id = %s"
            ),
            (event.motions, event.offboarded, event.change, event.motion, event.partner_id),
        )

    @on(TierChanged)
    def _tier_changed(self, curs: Statements, event: TierChanged) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.registration_partners SET tiers = tiers || %s"
                " WHERE partner_id = %s"
            ),
            (Jsonb({event.motion: event.tier}), event.partner_id),
        )

    def get(self, partner_id: UUID) -> KnownPartner | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT partner_id, legal_name, motions, function, tiers, offboarded"
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
            tiers=row["tiers"],
            offboarded=row["offboarded"],
        )


class CatchingUpDirectory:
    """Reads the directory; on a miss (or when asked for the latest), first lets it catch up
    with tiering's log, so a partner enrolled a moment ago can register at once."""

    def __init__(self, view: PartnerDirectoryView, catch_up: Callable[[], None]) -> None:
        self.view = view
        self.catch_up = catch_up

    def get(self, partner_id: UUID, *, latest: bool = False) -> KnownPartner | None:
        partner = None if latest else self.view.get(partner_id)
        if partner is None:
            self.catch_up()
            partner = self.view.get(partner_id)
        return partner


_CLOSED_BY = {
    Registration.Rejected: REJECTED,  # type: ignore[attr-defined]
    Registration.Lost: LOST,  # type: ignore[attr-defined]
    Registration.Withdrawn: WITHDRAWN,  # type: ignore[attr-defined]
    Registration.Expired: EXPIRED,  # type: ignore[attr-defined]
}


_OPEN_SQL = "status IN ({})".format(", ".join(f"'{status}'" for status in sorted(OPEN)))
_CANDIDATES = 50
# How many open registrations a lookup may read through its match keys, rarest keys first. A
# key that many registrations share (a common syllable pair) says little about any of them;
# reading its rows costs in proportion to the table. With a budget the lookup costs the same
# at a million registrations as at ten thousand (docs/decisions/0008).
PROBE_BUDGET = 200
_CANDIDATES_SQL = (
    "WITH probe AS ("  # noqa: S608 (constants; values bound)
    " SELECT match_key, sum(open_rows) OVER (ORDER BY open_rows, match_key) - open_rows AS before"
    " FROM {schema}.registration_match_keys"
    " WHERE match_key = ANY(%(keys)s::bigint[]) AND open_rows > 0)"
    " SELECT registration_id, normalized_name, country, domain"
    " FROM {schema}.registration_deals"
    " WHERE is_open"
    "  AND match_keys && ARRAY(SELECT match_key FROM probe WHERE before < %(budget)s)"
    "  AND product_line = %(product_line)s AND customer_key <> %(key)s"
    " ORDER BY (SELECT count(*) FROM unnest(match_keys) AS k"
    "  WHERE k IN (SELECT match_key FROM probe WHERE before < %(budget)s)) DESC,"
    "  registration_id"
    f" LIMIT {_CANDIDATES}"
)
# The open registrations holding each key, kept by the database itself: whichever handler
# opens, closes or re-keys a registration, the count follows. A key no open registration holds
# has no row, as in a rebuilt view, which counts once at the end.
_COUNT_MATCH_KEYS_SQL = (
    "CREATE OR REPLACE FUNCTION {schema}.registration_count_match_keys() RETURNS trigger"
    " LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_OP = 'UPDATE' AND OLD.is_open THEN"
    "  UPDATE {schema}.registration_match_keys SET open_rows = open_rows - 1"
    "  WHERE match_key = ANY(OLD.match_keys);"
    "  DELETE FROM {schema}.registration_match_keys"
    "  WHERE match_key = ANY(OLD.match_keys) AND open_rows = 0;"
    " END IF;"
    " IF NEW.is_open THEN"
    "  INSERT INTO {schema}.registration_match_keys AS counted"
    "  SELECT DISTINCT match_key, 1 FROM unnest(NEW.match_keys) AS match_key"
    "  ON CONFLICT (match_key) DO UPDATE SET open_rows = counted.open_rows + 1;"
    " END IF;"
    " RETURN NULL; END $$"
)


class DealsView(View):
    """Every registration with its status and flags: lists, the review queue, matching."""

    name = "registration_deals"
    tables = ("registration_deals", "registration_match_keys")
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.registration_deals ("
        " registration_id uuid PRIMARY KEY, partner_id uuid NOT NULL,"
        " customer_key text NOT NULL, customer_name text NOT NULL,"
        " normalized_name text NOT NULL, domain text, match_keys bigint[] NOT NULL,"
        " country text NOT NULL, product_line text NOT NULL, motion text NOT NULL,"
        " estimated_amount numeric NOT NULL, currency text NOT NULL,"
        " expected_close date NOT NULL, external_id text, status text NOT NULL,"
        " protected_until date, flags jsonb NOT NULL, reasons text[] NOT NULL,"
        " submitted_at timestamptz NOT NULL, review_due_at timestamptz,"
        " review_overdue boolean NOT NULL, extensions integer NOT NULL,"
        " extension_requested boolean NOT NULL, contract_id uuid,"
        " registered_at timestamptz NOT NULL, changed_at timestamptz NOT NULL,"
        f" is_open boolean GENERATED ALWAYS AS ({_OPEN_SQL}) STORED)",
        "CREATE TABLE IF NOT EXISTS {schema}.registration_match_keys ("
        " match_key bigint PRIMARY KEY, open_rows integer NOT NULL)",
    )
    index_sql = (
        "CREATE INDEX IF NOT EXISTS registration_deals_partner"
        " ON {schema}.registration_deals (partner_id, registered_at, registration_id)",
        "CREATE INDEX IF NOT EXISTS registration_deals_listing"
        " ON {schema}.registration_deals (registered_at, registration_id)",
        "CREATE INDEX IF NOT EXISTS registration_deals_external"
        " ON {schema}.registration_deals (external_id)",
        "CREATE INDEX IF NOT EXISTS registration_deals_queue"
        " ON {schema}.registration_deals (status, submitted_at)",
        "CREATE INDEX IF NOT EXISTS registration_deals_protection"
        " ON {schema}.registration_deals (protected_until) WHERE status = 'approved'",
        "CREATE INDEX IF NOT EXISTS registration_deals_review_due"
        " ON {schema}.registration_deals (review_due_at)"
        " WHERE status = 'pending_review' AND NOT review_overdue",
        # Without a pending list, lookups cost the same right after a bulk load as ever after.
        "CREATE INDEX IF NOT EXISTS registration_deals_match_keys ON {schema}.registration_deals"
        " USING gin (match_keys) WITH (fastupdate = off) WHERE is_open",
        _COUNT_MATCH_KEYS_SQL,
        "CREATE OR REPLACE TRIGGER registration_deals_opened AFTER INSERT"
        " ON {schema}.registration_deals FOR EACH ROW"
        " EXECUTE FUNCTION {schema}.registration_count_match_keys()",
        "CREATE OR REPLACE TRIGGER registration_deals_rekeyed AFTER UPDATE"
        " ON {schema}.registration_deals FOR EACH ROW"
        " WHEN (OLD.is_open IS DISTINCT FROM NEW.is_open"
        "  OR OLD.match_keys IS DISTINCT FROM NEW.match_keys)"
        " EXECUTE FUNCTION {schema}.registration_count_match_keys()",
        # Kept before keys without open registrations were deleted.
        "DELETE FROM {schema}.registration_match_keys WHERE open_rows = 0",
        # A rebuilt view, or one kept before the counts were: count what it holds (once: the
        # table is empty).
        "INSERT INTO {schema}.registration_match_keys"
        " SELECT match_key, count(*) FROM {schema}.registration_deals, unnest(match_keys) match_key"
        " WHERE is_open AND NOT EXISTS (SELECT FROM {schema}.registration_match_keys)"
        " GROUP BY match_key",
    )
    probe_budget = PROBE_BUDGET

    def _identity_columns(self, event: Any) -> tuple[str, str | None, str]:
        identity = CustomerIdentity.of(
            name=event.customer_name,
            country=event.country,
            domain=event.customer_domain,
            email=event.customer_email,
        )
        return identity.name, identity.domain, _array(sorted(match_keys(identity)))

    def _set(self, curs: Statements, event: Any, assignments: str, *values: Any) -> None:
        curs.execute(
            self.statement(
                f"UPDATE {{schema}}.registration_deals SET {assignments}, changed_at = %s"  # noqa: S608
                " WHERE registration_id = %s"
            ),
            (*values, event.timestamp, event.originator_id),
        )

    @on(Registration.Registered)
    def _registered(self, curs: Statements, event: Any) -> None:
        name, domain, keys = self._identity_columns(event)
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.registration_deals VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"
                "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,false,0,false,NULL,%s,%s)"
            ),
            (
                event.originator_id,
                event.partner_id,
                event.customer_key,
                event.customer_name,
                name,
                domain,
                keys,
                event.country,
                event.product_line,
                event.motion,
                event.estimated_value.amount,
                event.estimated_value.currency,
                event.expected_close,
                event.external_id,
                event.status,
                event.protected_until,
                Jsonb(_jsonable(event.flags)),
                [f["rule"] for f in event.flags],
                event.submitted_at,
                event.review_due_at,
                event.timestamp,
                event.timestamp,
            ),
        )

    @on(Registration.Resubmitted)  # type: ignore[attr-defined]
    def _resubmitted(self, curs: Statements, event: Any) -> None:
        name, domain, keys = self._identity_columns(event)
        self._set(
            curs,
            event,
            "customer_key = %s, customer_name = %s, normalized_name = %s, domain = %s,"
            " match_keys = %s, country = %s, product_line = %s, estimated_amount = %s,"
            " currency = %s, expected_close = %s, status = %s, protected_until = %s,"
            " flags = %s, reasons = %s, submitted_at = %s, review_due_at = %s,"
            " review_overdue = false",
            event.customer_key,
            event.customer_name,
            name,
            domain,
            keys,
            event.country,
            event.product_line,
            event.estimated_value.amount,
            event.estimated_value.currency,
            event.expected_close,
            event.status,
            event.protected_until,
            Jsonb(_jsonable(event.flags)),
            [f["rule"] for f in event.flags],
            event.submitted_at,
            event.review_due_at,
        )

    @on(Registration.Approved)
    def _approved(self, curs: Statements, event: Any) -> None:
        self._set(
            curs,
            event,
            "status = %s, protected_until = %s, review_due_at = NULL",
            APPROVED,
            event.protected_until,
        )

    @on(Registration.ReturnedForInformation)  # type: ignore[attr-defined]
    def _returned(self, curs: Statements, event: Any) -> None:
        self._set(curs, event, "status = %s, review_due_at = NULL", RETURNED)

    @on(*_CLOSED_BY)
    def _closed(self, curs: Statements, event: Any) -> None:
        self._set(
            curs,
            event,
            "status = %s, review_due_at = NULL, extension_requested = false",
            _CLOSED_BY[type(event)],
        )

    @on(Registration.Won)  # type: ignore[attr-defined]
    def _won(self, curs: Statements, event: Any) -> None:
        self._set(
            curs,
            event,
            "status = %s, contract_id = %s, review_due_at = NULL, extension_requested = false",
            WON,
            event.contract_id,
        )

    @on(Registration.ReviewOverdue)  # type: ignore[attr-defined]
    def _overdue(self, curs: Statements, event: Any) -> None:
        self._set(curs, event, "review_overdue = true")

    @on(Registration.ExtensionRequested)  # type: ignore[attr-defined]
    def _extension_requested(self, curs: Statements, event: Any) -> None:
        self._set(curs, event, "extension_requested = true")

    @on(Registration.ExtensionApproved)  # type: ignore[attr-defined]
    def _extension_approved(self, curs: Statements, event: Any) -> None:
        self._set(
            curs,
            event,
            "extension_requested = false, extensions = extensions + 1, protected_until = %s",
            event.protected_until,
        )

    @on(Registration.ExtensionDeclined)  # type: ignore[attr-defined]
    def _extension_declined(self, curs: Statements, event: Any) -> None:
        self._set(curs, event, "extension_requested = false")

    @on(Registration.DirectConflictRecorded)  # type: ignore[attr-defined]
    def _direct_conflict(self, curs: Statements, event: Any) -> None:
        flag = {
            "rule": "direct-conflict",
            "collides_with": f"direct_deal:{event.direct_deal_id}",
            "matched_keys": ["customer_key", "product_line"],
            "score": None,
            "detail": f"the vendor's own sales ({event.owner}) works this customer",
        }
        self._set(
            curs,
            event,
            "flags = flags || %s, reasons = array_append(reasons, 'direct-conflict')",
            Jsonb([flag]),
        )

    # --- questions the application asks ----------------------------------------------
    def similar_customers(
        self, identity: CustomerIdentity, product_line: str
    ) -> Sequence[tuple[UUID, CustomerIdentity]]:
        """Open registrations sharing match keys with this customer, most shared first: the
        candidates; the domain decides which resemble it enough to flag. Only the rarest keys
        are probed, up to `probe_budget` registrations."""
        with self.datastore.transaction(commit=False) as curs:
            # The match-key index is the plan that stays fast as the table grows; the planner
            # prices it above a scan of a few thousand rows, which costs more than it thinks
            # (and a table not yet analysed, as in a bulk import, would be scanned whatever
            # its size).
            curs.execute("SET LOCAL enable_seqscan = off")
            curs.execute(
                self.statement(_CANDIDATES_SQL),
                {
                    "product_line": product_line,
                    "key": identity.key,
                    "keys": sorted(match_keys(identity)),
                    "budget": self.probe_budget,
                },
                # Planned with the keys in hand, the ranking looks them up in a hash table; a
                # prepared, generic plan scans the array for every key of every candidate.
                prepare=False,
            )
            rows = curs.fetchall()
        return [
            (
                row["registration_id"],
                CustomerIdentity(
                    name=row["normalized_name"], country=row["country"], domain=row["domain"]
                ),
            )
            for row in rows
        ]

    def registrations_to_age(self, now: datetime) -> Sequence[UUID]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT registration_id FROM {schema}.registration_deals"
                    " WHERE (status = 'approved' AND protected_until < %s)"
                    " OR (status = %s AND NOT review_overdue AND review_due_at <= %s)"
                    " ORDER BY registration_id"
                ),
                (now.date(), PENDING_REVIEW, now),
            )
            return [row["registration_id"] for row in curs.fetchall()]


def _array(keys: list[int]) -> str:
    """An array of keys as its text, which the database reads as the column's ``bigint[]``:
    a list would be adapted item by item in Python, for every registration of a rebuild."""
    return "{" + ",".join(map(str, keys)) + "}"


def _jsonable(flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**f, "score": None if f["score"] is None else str(f["score"])} for f in flags]


class ContractsView(View):
    name = "registration_contracts"
    tables = ("registration_contracts",)
    create_sql = (
        "CREATE TABLE IF NOT EXISTS {schema}.registration_contracts ("
        " contract_id uuid PRIMARY KEY, customer_key text NOT NULL, partner_id uuid,"
        " registration_id uuid, motion text, start_date date NOT NULL,"
        " term_months integer NOT NULL, end_date date NOT NULL, mrr numeric NOT NULL,"
        " currency text NOT NULL, external_id text, poached boolean NOT NULL,"
        " renewal_due_on date NOT NULL, renewal_due_raised_for date, renewals integer NOT NULL,"
        " cancelled_on date)",
    )
    index_sql = (
        "CREATE INDEX IF NOT EXISTS registration_contracts_due"
        " ON {schema}.registration_contracts (renewal_due_on)",
        "CREATE INDEX IF NOT EXISTS registration_contracts_customer"
        " ON {schema}.registration_contracts (customer_key)",
        "CREATE INDEX IF NOT EXISTS registration_contracts_partner"
        " ON {schema}.registration_contracts (partner_id, contract_id)",
    )

    @on(Contract.Signed)
    def _signed(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "INSERT INTO {schema}.registration_contracts VALUES"
                " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,NULL,0,NULL)"
            ),
            (
                event.originator_id,
                event.customer_key,
                event.partner_id,
                event.registration_id,
                event.motion,
                event.start_date,
                event.term_months,
                event.end_date,
                event.mrr.amount,
                event.mrr.currency,
                event.external_id,
                event.poached,
                event.end_date - RENEWAL_WINDOW,
            ),
        )

    @on(Contract.RenewalDueRaised)
    def _renewal_due(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.registration_contracts SET renewal_due_raised_for = %s"
                " WHERE contract_id = %s"
            ),
            (event.end_date, event.originator_id),
        )

    @on(Contract.Renewed)
    def _renewed(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.registration_contracts SET end_date = %s, mrr = %s,"
                " renewal_due_on = %s, renewals = renewals + 1 WHERE contract_id = %s"
            ),
            (
                event.end_date,
                event.mrr.amount,
                event.end_date - RENEWAL_WINDOW,
                event.originator_id,
            ),
        )

    @on(Contract.Cancelled)
    def _cancelled(self, curs: Statements, event: Any) -> None:
        curs.execute(
            self.statement(
                "UPDATE {schema}.registration_contracts SET cancelled_on = %s"
                " WHERE contract_id = %s"
            ),
            (event.effective_on, event.originator_id),
        )

    def renewal_candidates(self, until: date) -> Sequence[UUID]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT contract_id FROM {schema}.registration_contracts"
                    " WHERE renewal_due_on <= %s AND cancelled_on IS NULL"
                    " AND renewal_due_raised_for IS DISTINCT FROM end_date"
                    " ORDER BY contract_id"
                ),
                (until,),
            )
            return [row["contract_id"] for row in curs.fetchall()]

    def incumbent(self, customer_key: str, on: date) -> Incumbency | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.statement(
                    "SELECT contract_id, partner_id, end_date FROM {schema}.registration_contracts"
                    " WHERE customer_key = %s AND partner_id IS NOT NULL"
                    " AND (cancelled_on IS NULL OR cancelled_on > %s)"
                    " AND renewal_due_on <= %s AND %s <= end_date"
                    " ORDER BY end_date DESC, contract_id LIMIT 1"
                ),
                (customer_key, on, on, on),
            )
            row = curs.fetchone()
        if row is None:
            return None
        return Incumbency(row["contract_id"], row["partner_id"], row["end_date"])


class RegistrationIndex:
    """The application's ``CustomerIndex`` and the clock's ``Schedule``, over the two views."""

    def __init__(self, deals: DealsView, contracts: ContractsView) -> None:
        self.deals = deals
        self.contracts = contracts

    def similar_customers(
        self, identity: CustomerIdentity, product_line: str
    ) -> Sequence[tuple[UUID, CustomerIdentity]]:
        return self.deals.similar_customers(identity, product_line)

    def incumbent(self, customer_key: str, on: date) -> Incumbency | None:
        return self.contracts.incumbent(customer_key, on)

    def renewal_candidates(self, until: date) -> Sequence[UUID]:
        return self.contracts.renewal_candidates(until)

    def registrations_to_age(self, now: datetime) -> Sequence[UUID]:
        return self.deals.registrations_to_age(now)
