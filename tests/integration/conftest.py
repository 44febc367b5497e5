from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.commissions import service as commissions
from services.registration import service as registration
from services.tiering import service as tiering
from shared.auth import Role
from shared.runtime import ServiceRuntime
from tests.conftest import PARTNER_BODY, STUCK_SECONDS, bearer, new_database, settings_on


@dataclass
class Clients:
    tiering: TestClient
    registration: TestClient
    commissions: TestClient

    def enrol(self, **overrides: Any) -> str:
        response = self.tiering.post(
            "/v1/partners", json={**PARTNER_BODY, **overrides}, headers=bearer(Role.ADMIN)
        )
        assert response.status_code == 201, response.text
        partner_id: str = response.json()["partner_id"]
        return partner_id

    def sign(
        self,
        *,
        start: date,
        mrr: str,
        term_months: int = 12,
        registration_id: str | None = None,
        partner_id: str | None = None,
        customer: dict[str, str] | None = None,
        external_id: str | None = None,
    ) -> str:
        """The CRM reports a contract signed (for a registration, or a partner and customer)."""
        body: dict[str, Any] = {
            "start_date": start.isoformat(),
            "term_months": term_months,
            "mrr": {"amount": mrr, "currency": "USD"},
        }
        optional = {
            "registration_id": registration_id,
            "partner_id": partner_id,
            "external_id": external_id,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if customer is not None:
            body["customer"] = customer
        response = self.registration.post("/v1/contracts", json=body, headers=bearer(Role.CRM))
        assert response.status_code == 201, response.text
        contract_id: str = response.json()["contract_id"]
        return contract_id

    def run_clocks(self, until: datetime) -> None:
        """Every service's clock to one instant: one program time; then what they decided is
        taken in by every projection."""
        for client in (self.tiering, self.registration, self.commissions):
            ran = client.post(
                "/v1/admin/clock", json={"until": until.isoformat()}, headers=bearer(Role.ADMIN)
            )
            assert ran.status_code == 200, ran.text
        self.settle()

    def settle(self) -> None:
        """Wait until every follower of the three services has taken every event of the log it
        follows: a projection read next reflects all that was written (a fact, by positions;
        no time that holds only on an idle machine)."""
        runtimes: list[ServiceRuntime] = [
            client.app.state.runtime  # type: ignore[attr-defined]
            for client in (self.registration, self.tiering, self.commissions)
        ]
        settled(runtimes)

    def ledger(self, **params: str) -> list[dict[str, Any]]:
        """Commission lines, as finance reads them."""
        response = self.commissions.get("/v1/ledger", params=params, headers=bearer(Role.FINANCE))
        assert response.status_code == 200, response.text
        lines: list[dict[str, Any]] = response.json()["lines"]
        return lines


def settled(runtimes: list[ServiceRuntime]) -> None:
    """Every follower of these services at the head of its log, seen twice in a row with no
    position moved in between (a decision taken meanwhile is a new event to follow)."""
    followers = [follower for runtime in runtimes for follower in runtime.followers]
    deadline = time.monotonic() + STUCK_SECONDS
    seen: list[tuple[int, int]] | None = None
    while True:
        for follower in followers:
            if follower.stuck is not None:
                raise AssertionError(follower.stuck.describe())
        now = [(follower.position(), follower.pending()) for follower in followers]
        if now == seen and not any(pending for _, pending in now):
            return
        if time.monotonic() > deadline:
            behind = {f.name: p for f, (_, p) in zip(followers, now, strict=True) if p}
            raise AssertionError(f"followers still behind after {STUCK_SECONDS}s: {behind}")
        seen = now
        time.sleep(0.02)


@contextmanager
def running_services(settings_for: Callable[..., Any]) -> Iterator[Clients]:
    """The three services in this process, each with its workers, until the block ends."""
    local = {"webhook_allow_private_urls": True, "webhook_poll_seconds": 0.05}
    with (
        TestClient(tiering.create_app(settings_for(**local))) as t,
        TestClient(registration.create_app(settings_for(**local))) as r,
        TestClient(commissions.create_app(settings_for(**local))) as c,
    ):
        yield Clients(t, r, c)


@pytest.fixture
def clients(settings_for: Callable[..., Any]) -> Iterator[Clients]:
    """The three services in this process, each with its workers, on one fresh database."""
    with running_services(settings_for) as running:
        yield running


@pytest.fixture(scope="module")
def shared_clients(postgres_admin_url: str) -> Iterator[Clients]:
    """The three services on one database for the tests of a module whose requests are all
    refused or only read: none changes what another reads, so they need not each start the
    services on a database of their own. Only for a module whose every test uses it: beside
    another test's services it would double the connections held (about 60 each)."""
    with new_database(postgres_admin_url) as url, running_services(settings_on(url)) as running:
        yield running


def sell_certified_from(first_year_value: int) -> str:
    """The default tiers, except that ``first_year_value`` makes a seller certified."""
    return _TIERS_WITH_CERTIFIED_FROM.replace("CERTIFIED_FROM", str(first_year_value))


_TIERS_WITH_CERTIFIED_FROM = """
reporting_currency: USD
tiers:
  motions:
    sell:
      tiers:
        - name: registered
        - name: certified
          any_of: [{first_year_value: CERTIFIED_FROM}, {approved_registrations: 10}]
        - name: premier_certified
          any_of: [{first_year_value: 100000, regions: 2}]
        - name: alliance
          any_of: [{first_year_value: 1000000, regions: 2}]
    refer: {tiers: [{name: associate}, {name: premium_associate, any_of: [{won_referrals: 5}]}]}
    service:
      tiers: [{name: registered}, {name: certified, any_of: [{certifications: 2, projects: 1}]}]
    manage: {tiers: [{name: registered}, {name: certified, any_of: [{managed_mrr: 2000}]}]}
    build: {tiers: [{name: registered}, {name: certified, any_of: [{integrations: 1}]}]}
"""
