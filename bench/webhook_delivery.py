"""Webhook deliveries per second to a local receiver, and the time from an event to its
delivery (p50/p99).

Registration and tiering run as real processes; a receiver (``bench.webhook_receiver``) runs in
a process of its own and logs each arrival. A program-wide endpoint subscribes to
``DealRegistered``.

- Throughput: ``--events`` registrations are recorded with the dispatcher off; registration is
  restarted with it on, and the backlog's deliveries per second are timed at the receiver.
- Latency: ``--steady`` registrations at ``--rate`` per second with the dispatcher on; each
  delivery's latency is its arrival minus the event's timestamp.

    python -m bench.webhook_delivery --events 5000 --steady 600 --rate 20 --results results.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

from bench.report import Figure, record
from bench.services import SECRET, Service, bench_database
from shared.auth import Role, mint_token

RECEIVER_PORT = 18990


def run(
    database_url: str | None,
    *,
    events: int = 5000,
    senders: int = 4,
    steady: int = 600,
    rate: float = 20.0,
) -> list[Figure]:
    logs = Path(tempfile.mkdtemp(prefix="dealreg-bench-logs-"))
    arrivals = logs / "arrivals.txt"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook_receiver", str(RECEIVER_PORT), str(arrivals)]
    )
    env = {"DEALREG_WEBHOOK_ALLOW_PRIVATE_URLS": "true", "DEALREG_WEBHOOK_POLL_SECONDS": "0.05"}
    with bench_database(database_url) as url:
        tiering = Service("tiering", url, 18903, logs / "tiering.log", env)
        registration = Service("registration", url, 18901, logs / "registration.log", env)
        try:
            tiering.start()
            registration.start()
            admin = {"Authorization": f"Bearer {mint_token(SECRET, Role.ADMIN, subject='b')}"}
            crm = {"Authorization": f"Bearer {mint_token(SECRET, Role.CRM, subject='b')}"}
            partner = httpx.post(
                f"{tiering.url}/v1/partners",
                json={
                    "legal_name": "Bench Partner",
                    "home_country": "US",
                    "regions": ["NA"],
                    "motions": ["sell"],
                    "function": "sales",
                    "category": "solution_reseller",
                },
                headers=admin,
            ).json()["partner_id"]
            created = httpx.post(
                f"{registration.url}/v1/webhooks/endpoints",
                json={
                    "url": f"http://127.0.0.1:{RECEIVER_PORT}/hook",
                    "event_types": ["DealRegistered"],
                },
                headers=admin,
            )
            created.raise_for_status()
            time.sleep(1)  # the dispatcher sees the endpoint

            def register(n: int) -> None:
                httpx.post(
                    f"{registration.url}/v1/registrations",
                    json={
                        "partner_id": partner,
                        "customer": {
                            "name": f"Webhook Customer {n}",
                            "country": "US",
                            "domain": f"customer-{n}.example",
                        },
                        "product_line": "cloud",
                        "motion": "sell",
                        "estimated_value": {"amount": "1000", "currency": "USD"},
                        "expected_close": "2027-12-31",
                    },
                    headers=crm,
                    timeout=60,
                ).raise_for_status()

            def arrivals_of(ids_from: int) -> list[list[str]]:
                lines = arrivals.read_text().splitlines() if arrivals.exists() else []
                return [line.split() for line in lines[ids_from:]]

            def wait_for(count: int, ids_from: int) -> list[list[str]]:
                deadline = time.time() + 900
                while time.time() < deadline:
                    rows = arrivals_of(ids_from)
                    if len({r[0] for r in rows}) >= count:
                        return rows
                    time.sleep(0.5)
                raise SystemExit(f"only {len(arrivals_of(ids_from))} of {count} delivered")

            # throughput: a backlog, drained by a dispatcher started afresh
            registration.stop()
            off = Service(
                "registration",
                url,
                18901,
                logs / "registration.log",
                {**env, "DEALREG_WEBHOOK_POLL_SECONDS": "0"},
            )
            off.start()
            with ThreadPoolExecutor(senders) as pool:
                list(pool.map(register, range(events)))
            off.stop()
            registration.start()
            backlog = wait_for(events, 0)
            arrived = [float(r[1]) for r in backlog]
            throughput = len(backlog) / (max(arrived) - min(arrived))

            # latency at a steady rate
            first = len(backlog)
            for n in range(steady):
                started = time.perf_counter()
                register(events + n)
                time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
            delivered = wait_for(steady, first)
            latency = [
                (float(r[1]) - datetime.fromisoformat(r[2]).timestamp()) * 1000 for r in delivered
            ]
            q = statistics.quantiles(latency, n=100, method="inclusive")
        finally:
            registration.stop()
            tiering.stop()
            receiver.terminate()
    print(f"(service logs in {logs})")
    measured = f"{len(latency)} deliveries of {steady:,} registrations at {rate:g}/s"
    return [
        Figure(
            f"webhook deliveries/s (backlog of {events:,})",
            throughput,
            "deliveries/s",
            note="first to last arrival at the receiver, the backlog recorded with the"
            " dispatcher off and drained by registration restarted with it on",
        ),
        Figure(
            f"event → webhook delivery at {rate:g}/s, p50",
            q[49],
            "ms",
            note=f"{measured}; arrival at the receiver minus the event's timestamp",
        ),
        Figure(
            f"event → webhook delivery at {rate:g}/s, p99",
            q[98],
            "ms",
            note=f"{measured}; max {max(latency):.0f} ms",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--steady", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    figures = run(
        args.database_url,
        events=args.events,
        senders=args.senders,
        steady=args.steady,
        rate=args.rate,
    )
    record(figures, args.results, "python -m bench.webhook_delivery " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
