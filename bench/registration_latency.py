"""Latency of registering a deal over HTTP as the number of existing registrations grows.

The registration and tiering services run as real processes (``dealreg serve``) on a database
of their own. Between measurements the registration service is stopped, the log is grown by
recording registrations straight through the domain and the event store (as an import would,
minus the HTTP), and the service restarted: it catches its projections up before it is ready.
Then ``--samples`` registrations are sent one after another and timed: fresh customers, a
share of conflicts with an existing registration, and a share of near-duplicate names.

    python -m bench.registration_latency --sizes 10000 100000 1000000

The database is the embedded PostgreSQL unless ``--database-url`` (or BENCH_DATABASE_URL)
names a server; a database ``dealreg_bench_<random>`` is created there and dropped after.
``--profile DIR`` samples the registration service with py-spy while it is measured and writes
one collapsed-stack file per size (``registration-<size>.txt``; flamegraph tools read it).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.services import SECRET, Service, bench_database, profiled
from services.registration.application import RegistrationApplication
from services.registration.domain.claims import CustomerClaims
from services.registration.domain.customers import CustomerIdentity, normalized_name
from services.registration.domain.engagement import APPROVED, PROTECTION, Decision
from services.registration.domain.registrations import Registration
from shared.auth import Role, mint_token
from shared.database import connect_database
from shared.money import Money

PARTNERS = 200
ONSETS = [
    "b",
    "br",
    "bl",
    "c",
    "ch",
    "cl",
    "cr",
    "d",
    "dr",
    "f",
    "fl",
    "fr",
    "g",
    "gl",
    "gr",
    "h",
    "j",
    "k",
    "kl",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "pl",
    "pr",
    "qu",
    "r",
    "s",
    "sh",
    "sk",
    "sl",
    "sp",
    "st",
    "str",
    "t",
    "th",
    "tr",
    "v",
    "w",
    "z",
]
NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
CODAS = ["", "n", "r", "l", "s", "x", "m", "nd", "rt", "ck", "ng"]
GENERIC = ["", "", "", "Systems", "Group", "Holdings", "Labs", "Partners", "Industries"]


def company(rng: random.Random) -> str:
    """An invented company name: two words of one to three syllables, maybe a generic third."""
    words = [
        "".join(
            rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS)
            for _ in range(rng.randint(1, 3))
        ).capitalize()
        for _ in range(2)
    ]
    return " ".join([*words, rng.choice(GENERIC)]).strip()


def typo(name: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(name) - 1)
    return name[:i] + name[i + 1] + name[i] + name[i + 2 :]


def grow(database_url: str, partners: list[uuid.UUID], names: list[str], upto: int) -> float:
    """Record registrations until there are ``upto``, through the domain; returns seconds."""
    started = time.perf_counter()
    rng = random.Random(len(names))
    # Recording only: nothing here asks the directory or the index.
    unused: Any = None
    database = connect_database(database_url)
    app = RegistrationApplication(database, partners=unused, customers=unused)
    now = datetime(2027, 1, 4, 9, tzinfo=UTC)
    nobody_else = Decision(APPROVED, (), date(2027, 1, 4) + PROTECTION, None, None, None)
    batch: list[object] = []
    # Each a customer of its own: a name is a customer key too, and one claimed twice is two
    # registrations protecting one customer, which the rules never record.
    named = {normalized_name(name) for name in names}
    while len(names) < upto:
        name = company(rng)
        if normalized_name(name) in named:
            continue
        named.add(normalized_name(name))
        n = len(names)
        names.append(name)
        identity = CustomerIdentity.of(
            name=name, country="US", domain=f"{name.replace(' ', '').lower()}{n}.com"
        )
        registration = Registration.submit(
            partner_id=partners[n % len(partners)],
            customer=identity,
            customer_name=name,
            customer_domain=identity.domain,
            customer_email=None,
            product_line="cloud",
            motion="sell",
            estimated_value=Money(Decimal(1000 + n % 50000), "USD"),
            expected_close=date(2027, 6, 30),
            external_id=None,
            decision=nobody_else,
            now=now,
        )
        claims = CustomerClaims(identity.keys, "cloud", {})
        batch += [
            registration,
            *claims.protect(registration.id, registration.partner_id, date(2027, 4, 4)),
        ]
        if len(batch) >= 4000 or len(names) == upto:
            app.save(*batch)
            batch = []
    app.close()
    database.close()
    return time.perf_counter() - started


def request(
    rng: random.Random, partners: list[uuid.UUID], names: list[str], i: int
) -> tuple[uuid.UUID, dict[str, Any]]:
    """The ``i``-th registration to send, and its partner: a fresh customer mostly (80%), a
    conflict with another partner's customer (10%) or a near-duplicate name (10%)."""
    partner = partners[rng.randrange(len(partners))]
    kind = rng.random()
    if kind < 0.1:  # conflict: another partner's customer
        n = rng.randrange(len(names))
        name, domain = names[n], f"{names[n].replace(' ', '').lower()}{n}.com"
        partner = partners[(n + 1) % len(partners)]
    elif kind < 0.2:  # a near-duplicate name, no domain
        name, domain = typo(names[rng.randrange(len(names))], rng), None
    else:
        name = company(rng)
        domain = f"{name.replace(' ', '').lower()}-m{i}.net"
    body = {
        "partner_id": str(partner),
        "customer": {"name": name, "country": "US", "domain": domain},
        "product_line": "cloud",
        "motion": "sell",
        "estimated_value": {"amount": "5000.00", "currency": "USD"},
        "expected_close": "2027-06-30",
    }
    return partner, body


def enrol(tiering: Service, count: int = PARTNERS) -> list[uuid.UUID]:
    """``count`` partners, enrolled through the tiering service."""
    admin = {"Authorization": f"Bearer {mint_token(SECRET, Role.ADMIN, subject='bench')}"}
    partners = []
    with httpx.Client(base_url=tiering.url, headers=admin, timeout=60) as client:
        for n in range(count):
            response = client.post(
                "/v1/partners",
                json={
                    "legal_name": f"Bench Partner {n}",
                    "home_country": "US",
                    "regions": ["NA"],
                    "motions": ["sell"],
                    "function": "sales",
                    "category": "solution_reseller",
                },
            )
            response.raise_for_status()
            partners.append(uuid.UUID(response.json()["partner_id"]))
    return partners


def measure(
    registration: Service, partners: list[uuid.UUID], names: list[str], samples: int
) -> list[float]:
    rng = random.Random(samples + len(names))
    latencies = []
    with httpx.Client(base_url=registration.url, timeout=60) as client:
        for i in range(samples):
            partner, body = request(rng, partners, names, i)
            token = mint_token(SECRET, Role.PARTNER, subject="bench", partner_id=partner)
            started = time.perf_counter()
            response = client.post(
                "/v1/registrations", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 201:
                raise SystemExit(f"registration failed: {response.status_code} {response.text}")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--profile", type=Path, help="write py-spy profiles into this folder")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    logs = Path(tempfile.mkdtemp(prefix="dealreg-bench-logs-"))
    with bench_database(args.database_url) as url:
        tiering = Service("tiering", url, 18903, logs / "tiering.log")
        registration = Service("registration", url, 18901, logs / "registration.log")
        try:
            tiering.start()
            partners = enrol(tiering)
            names: list[str] = []
            print("| existing | seed s | catch-up s | p50 ms | p90 ms | p99 ms | max ms |")
            print("|---:|---:|---:|---:|---:|---:|---:|")
            for size in sorted(args.sizes):
                seeded = grow(url, partners, names, size)
                caught_up = registration.start()
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("ANALYZE")  # as autovacuum would have, in a running system
                profile = args.profile / f"registration-{size}.txt" if args.profile else None
                with profiled(registration, profile):
                    registration_ms = measure(registration, partners, names, args.samples)
                registration.stop()
                q = statistics.quantiles(registration_ms, n=100, method="inclusive")
                print(
                    f"| {size:,} | {seeded:.0f} | {caught_up:.0f} | {q[49]:.1f} | {q[89]:.1f}"
                    f" | {q[98]:.1f} | {max(registration_ms):.1f} |",
                    flush=True,
                )
        finally:
            registration.stop()
            tiering.stop()
    print(f"(service logs in {logs})")


if __name__ == "__main__":
    main()
