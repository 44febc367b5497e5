"""Bulk import: rows per second of one CSV import over HTTP, and how long the projections take
to reflect it.

The tiering and registration services run as real processes (``dealreg serve``) on a database
of their own (commissions is not on the import's path). Partners are enrolled through tiering;
``--existing`` registrations are recorded straight through the domain before registration
starts (it catches its projections up before it is ready). Then one CSV of ``--rows`` rows is
POSTed to ``/v1/imports/registrations`` and timed until the response is received. The rows are
a realistic mix: fresh customers, conflicts with an existing customer of another partner,
near-duplicate names of existing customers and of rows earlier in the same file, the same
customer twice in the file for two partners, and CRM ids already recorded by an earlier import
(unchanged). Catch-up is the time from the response until registration's deals view holds a
row for every registration recorded.

    python -m bench.bulk_import --rows 10000 --existing 10000

The database is the embedded PostgreSQL (Unix socket) unless ``--database-url`` (or
BENCH_DATABASE_URL) names a server; a database ``dealreg_bench_<random>`` is created there and
dropped after. ``--profile DIR`` samples the registration service's CPU (the thread holding the
interpreter lock) with py-spy during the import
(``registration-import.txt``, collapsed stacks).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.registration_latency import company, enrol, grow, typo
from bench.report import Figure, record
from bench.services import SECRET, Service, bench_database, free_port, profiled
from shared.auth import Role, mint_token

PARTNERS = 50
TARGET = 1_000.0
COLUMNS = [
    "partner_id",
    "customer_name",
    "customer_country",
    "customer_domain",
    "customer_email",
    "product_line",
    "motion",
    "estimated_amount",
    "currency",
    "expected_close",
    "external_id",
]


def rows(
    partners: list[uuid.UUID],
    names: list[str],
    count: int,
    seed: int,
    recorded: list[tuple[str, int]],
) -> str:
    """A CSV of ``count`` rows: 70% fresh customers, 8% conflicts with an existing customer of
    another partner, 8% near-duplicates of an existing name, 6% near-duplicates of a row earlier
    in the file, 4% a customer earlier in the file again for another partner, 4% a CRM id
    already recorded (``recorded``: each with the index of its partner)."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    here: list[tuple[str, str, int]] = []  # (name, domain, partner index) of earlier rows
    for i in range(count):
        p = rng.randrange(len(partners))
        kind = rng.random()
        external_id = f"BULK-{seed}-{i:06d}"
        if kind < 0.08 and names:  # conflict: another partner's existing customer
            n = rng.randrange(len(names))
            name, domain = names[n], f"{names[n].replace(' ', '').lower()}{n}.com"
            p = (n + 1) % len(partners)
        elif kind < 0.16 and names:  # near-duplicate of an existing name, no domain
            name, domain = typo(names[rng.randrange(len(names))], rng), ""
        elif kind < 0.22 and here:  # near-duplicate of a row earlier in this file
            name, domain = typo(here[rng.randrange(len(here))][0], rng), ""
        elif kind < 0.26 and here:  # the same customer as an earlier row, another partner
            name, domain, q = here[rng.randrange(len(here))]
            p = (q + 1) % len(partners)
        elif kind < 0.30 and recorded:  # a CRM id an earlier import recorded (a CRM's retry)
            name, domain = company(rng), ""
            external_id, p = recorded[rng.randrange(len(recorded))]
        else:
            name = company(rng)
            domain = f"{name.replace(' ', '').lower()}-b{seed}-{i}.net"
            here.append((name, domain, p))
        writer.writerow(
            [
                partners[p],
                name,
                "US",
                domain,
                "",
                "cloud",
                "sell",
                f"{1000 + i % 90000}.00",
                "USD",
                "2027-06-30",
                external_id,
            ]
        )
    return out.getvalue()


def post(service: Service, body: str) -> tuple[float, dict[str, Any]]:
    token = mint_token(SECRET, Role.CRM, subject="bench")
    started = time.perf_counter()
    response = httpx.post(
        f"{service.url}/v1/imports/registrations",
        content=body.encode(),
        headers={"Authorization": f"Bearer {token}", "content-type": "text/csv"},
        timeout=3600,
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"import failed: {response.status_code} {response.text[:500]}")
    report: dict[str, Any] = response.json()
    return elapsed, report


def deals(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM registration_deals").fetchone()
    return int(row[0]) if row else 0


def caught_up(url: str, expected: int, timeout: float = 1800) -> float:
    """Seconds until registration's deals view holds ``expected`` rows."""
    started = time.perf_counter()
    while deals(url) < expected:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"the deals view has {deals(url)} of {expected} after {timeout}s")
        time.sleep(0.1)
    return time.perf_counter() - started


def run(
    database_url: str | None = None,
    *,
    rows_count: int = 10_000,
    existing: int = 10_000,
    profile: Path | None = None,
) -> list[Figure]:
    logs = Path(tempfile.mkdtemp(prefix="dealreg-bench-logs-"))
    with bench_database(database_url) as url:
        tiering = Service("tiering", url, free_port(), logs / "tiering.log")
        registration = Service("registration", url, free_port(), logs / "registration.log")
        try:
            tiering.start()
            partners = enrol(tiering, PARTNERS)
            names: list[str] = []
            seeded = grow(url, partners, names, existing) if existing else 0.0
            print(f"# {existing:,} registrations seeded in {seeded:.0f} s", flush=True)
            registration.start()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")  # as autovacuum would have, in a running system
            # A first, small import: its CRM ids come back in the big one (unchanged).
            first_rows = rows(partners, names, 200, 1, [])
            _, first = post(registration, first_rows)
            by_line = list(csv.reader(io.StringIO(first_rows)))
            owner = {str(partner): n for n, partner in enumerate(partners)}
            recorded = [
                (by_line[r["line"] - 1][-1], owner[by_line[r["line"] - 1][0]])
                for r in first["results"]
                if r["status"] == "recorded"
            ]
            caught_up(url, existing + first["recorded"])
            body = rows(partners, names, rows_count, 2, recorded)
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
            out = profile / "registration-import.txt" if profile else None
            with profiled(registration, out, gil=True, rate=100):
                elapsed, report = post(registration, body)
                behind = existing + first["recorded"] + report["recorded"] - deals(url)
                catch_up = caught_up(url, existing + first["recorded"] + report["recorded"])
        finally:
            registration.stop()
            tiering.stop()
    assert report["rows"] == rows_count, report["rows"]
    statuses: dict[str, int] = {}
    for result in report["results"]:
        key = result["registration_status"] or result["status"]
        statuses[key] = statuses.get(key, 0) + 1
    print(f"# {rows_count:,} rows in {elapsed:.1f} s: {statuses}; logs in {logs}", flush=True)
    rate = rows_count / elapsed
    where = "embedded server, Unix socket" if database_url is None else "PostgreSQL over TCP"
    return [
        Figure(
            "bulk import rows/s",
            rate,
            "rows/s",
            target=f"≥ {TARGET:,.0f} rows/s",
            met=rate >= TARGET,
            note=(
                f"one CSV of {rows_count:,} rows over HTTP, {existing:,} registrations already"
                f" recorded, {where}; {report['recorded']:,} recorded,"
                f" {report['unchanged']:,} unchanged, {report['rejected']:,} rejected. Limited"
                " by the import's own CPU per row (scoring possible duplicates, candidates"
                " among the file's earlier rows, match keys, the batched view lookups) and by"
                " the service's followers, which take the same cores while it runs"
            ),
        ),
        Figure(
            "bulk import catch-up",
            catch_up,
            "s",
            note=(
                f"from the import's response until registration's deals view holds every row"
                f" ({behind:,} behind at the response)"
            ),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--existing", type=int, default=10_000)
    parser.add_argument("--results", type=Path)
    parser.add_argument("--profile", type=Path, help="write a py-spy profile into this folder")
    args = parser.parse_args()
    figures = run(
        args.database_url, rows_count=args.rows, existing=args.existing, profile=args.profile
    )
    record(figures, args.results, "python -m bench.bulk_import " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
