"""What a bulk import asks registration's views, a batch of rows at a time.

The same questions as ``RegistrationIndex.similar_customers`` and ``.incumbent`` (the candidate
query of the deals view, with its probe budget and its limit; the contracts view's incumbent),
asked for every row of a batch in one statement each rather than one row at a time: a row's
lookups were most of an import's time, in round trips (tests/integration/test_imports.py checks
that the answers are the per-row answers).

Rows of the import itself are not in the views yet: ``ImportedCustomers`` (in the application)
answers for them, probing and ranking as the candidate query does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

from psycopg import ClientCursor
from psycopg.rows import tuple_row

from services.registration.domain.customers import CustomerIdentity
from services.registration.domain.engagement import Incumbency
from services.registration.projections import (
    _CANDIDATES,
    _CANDIDATES_SQL,
    ContractsView,
    DealsView,
    RegistrationIndex,
    _array,
)

_INCUMBENTS_SQL = (
    "SELECT i.key, c.contract_id, c.partner_id, c.end_date"
    " FROM unnest(%(keys)s::text[]) AS i(key)"
    " CROSS JOIN LATERAL ("
    "  SELECT contract_id, partner_id, end_date FROM {schema}.registration_contracts"
    "  WHERE customer_key = i.key AND partner_id IS NOT NULL"
    "  AND (cancelled_on IS NULL OR cancelled_on > %(on)s)"
    "  AND renewal_due_on <= %(on)s AND %(on)s <= end_date"
    "  ORDER BY end_date DESC, contract_id LIMIT 1"
    " ) AS c"
)


class BatchLookups:
    def __init__(self, deals: DealsView, contracts: ContractsView) -> None:
        self.deals = deals
        self.contracts = contracts
        self._identities: dict[UUID, CustomerIdentity] = {}

    @property
    def budget(self) -> int:
        return self.deals.probe_budget

    @property
    def limit(self) -> int:
        return _CANDIDATES

    @classmethod
    def of(cls, index: object) -> BatchLookups | None:
        """Batched lookups over the service's views; None for any other index (a test's)."""
        if isinstance(index, RegistrationIndex):
            return cls(index.deals, index.contracts)
        return None

    def similar_customers(
        self, asked: Sequence[tuple[CustomerIdentity, str, frozenset[int]]]
    ) -> list[list[tuple[UUID, CustomerIdentity]]]:
        """For each (customer, product line, its match keys), what ``similar_customers``
        answers, in order: the deals view's own candidate query for each, its values written
        in (planned with the keys in hand, as it is for one row), all in one statement."""
        found: list[list[tuple[UUID, CustomerIdentity]]] = [[] for _ in asked]
        if not asked:
            return found
        with self.deals.datastore.transaction(commit=False) as curs:
            writer = ClientCursor(curs.connection)
            one = self.deals.statement(_CANDIDATES_SQL)
            parts = [
                f"SELECT {n} AS ord, * FROM ("  # noqa: S608 (values written in by psycopg)
                + writer.mogrify(
                    one,
                    {
                        "product_line": product_line,
                        "key": identity.key,
                        "keys": _array(sorted(keys)),
                        "budget": self.deals.probe_budget,
                    },
                )
                + f") AS c{n}"
                for n, (identity, product_line, keys) in enumerate(asked)
            ]
            curs.execute("SET LOCAL enable_seqscan = off")  # as the query for one row does
            # Costed as one big query, it would be compiled by a server with JIT (Debian's
            # PostgreSQL 15 has it on): seconds for every batch, for a query of milliseconds.
            curs.execute("SET LOCAL jit = off")
            curs.execute(" UNION ALL ".join(parts).encode(), prepare=False)
            curs.row_factory = tuple_row  # type: ignore[assignment]
            rows: list[tuple[Any, ...]] = curs.fetchall()  # type: ignore[assignment]
        for n, registration_id, name, country, domain in rows:
            identity = self._identities.get(registration_id)
            if identity is None:  # one object a registration: its label is worked out once
                identity = CustomerIdentity(name=name, country=country, domain=domain)
                self._identities[registration_id] = identity
            found[n].append((registration_id, identity))
        return found

    def incumbents(self, customer_keys: Sequence[str], on: date) -> dict[str, Incumbency]:
        """For each customer with one, what ``incumbent`` answers."""
        keys = sorted(set(customer_keys))
        if not keys:
            return {}
        with self.contracts.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.contracts.statement(_INCUMBENTS_SQL), {"keys": keys, "on": on})
            rows = curs.fetchall()
        return {
            row["key"]: Incumbency(row["contract_id"], row["partner_id"], row["end_date"])
            for row in rows
        }
