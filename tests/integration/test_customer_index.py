"""The deals view as the customer index: match-key counts and the probe budget."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from services.registration.domain.customers import CustomerIdentity, match_keys
from services.registration.domain.engagement import APPROVED, PROTECTION, Decision
from services.registration.domain.registrations import Registration
from services.registration.projections import DealsView
from shared.database import connect_database
from shared.money import Money

pytestmark = pytest.mark.postgres

NOW = datetime(2027, 1, 4, 9, tzinfo=UTC)
NOBODY_ELSE = Decision(APPROVED, (), date(2027, 1, 4) + PROTECTION, None, None, None)


class Log:
    """Feeds events to the view as its follower would, positions counting up."""

    def __init__(self, view: DealsView) -> None:
        self.view = view
        self.position = 0

    def record(self, registration: Registration) -> Registration:
        events: list[tuple[Any, Tracking]] = []
        for event in registration.collect_events():
            self.position += 1
            events.append((event, Tracking("registration", self.position)))
        self.view.process_many(events)
        return registration

    def register(self, name: str, domain: str | None = None) -> Registration:
        identity = CustomerIdentity.of(name=name, country="US", domain=domain)
        return self.record(
            Registration.submit(
                partner_id=uuid.uuid4(),
                customer=identity,
                customer_name=name,
                customer_domain=identity.domain,
                customer_email=None,
                product_line="cloud",
                motion="sell",
                estimated_value=Money(Decimal(1000), "USD"),
                expected_close=date(2027, 6, 30),
                external_id=None,
                decision=NOBODY_ELSE,
                now=NOW,
            )
        )


@pytest.fixture
def deals(database_url: str) -> Iterator[DealsView]:
    database = connect_database(database_url)
    yield DealsView.open(database)
    database.close()


def counts(view: DealsView, name: str) -> set[int]:
    keys = sorted(match_keys(CustomerIdentity.of(name=name, country="US")))
    with view.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            "SELECT open_rows FROM registration_match_keys WHERE match_key = ANY(%s)", (keys,)
        )
        return {row["open_rows"] for row in curs.fetchall()}


def test_match_key_counts_follow_registrations_as_they_open_and_close(deals: DealsView) -> None:
    log = Log(deals)
    first = log.register("Northwind Traders")
    second = log.register("Northwind Traders")
    assert counts(deals, "Northwind Traders") == {2}

    first.withdraw(by="partner", on=NOW.date(), reason="lost interest")
    log.record(first)
    assert counts(deals, "Northwind Traders") == {1}

    second.lose(by="partner", on=NOW.date(), reason="went with a competitor")
    log.record(second)
    assert counts(deals, "Northwind Traders") == set()  # no open registration: no row
    assert (
        deals.similar_customers(CustomerIdentity.of(name="Nortwind Traders", country="US"), "cloud")
        == []
    )


def test_a_lookup_probes_the_rarest_keys_first_within_its_budget(deals: DealsView) -> None:
    log = Log(deals)
    # Fifty customers that share much of their name with the one we look for, and the one.
    crowd = [log.register(f"Globex Northwind {n}") for n in range(50)]
    wanted = log.register("Northwind Traders")
    typo = CustomerIdentity.of(name="Nortwind Traders", country="US")

    deals.probe_budget = 5
    found = {registration_id for registration_id, _ in deals.similar_customers(typo, "cloud")}
    assert wanted.id in found
    assert len(found & {registration.id for registration in crowd}) <= 5

    deals.probe_budget = 10_000
    everything = {registration_id for registration_id, _ in deals.similar_customers(typo, "cloud")}
    assert wanted.id in everything
    assert len(everything) > len(found)
