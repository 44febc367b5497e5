"""Webhook deliveries per second to a local receiver, and the time from an event to its
delivery (p50/p99).

Registration and tiering run as real processes; a receiver (``bench.webhook_receiver``) runs in
a process of its own and logs each arrival. A program-wide endpoint subscribes to
``DealRegistered``.

- Throughput: ``--events`` registrations are recorded with the dispatcher off; registration is
  restarted with it on, and the backlog's deliveries per second are timed at the receiver.
- Latency: ``--steady`` registrations at ``--rate`` per second with the dispatcher on; each
  delivery's latency is its arrival minus the event's timestamp.

    python -m bench.webhook_delivery --events 5000 --steady 600 --rate 20
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

from bench.services import SECRET, Service, bench_database
from shared.auth import Role, mint_token

RECEIVER_PORT = 18990


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--steady", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    logs = Path(tempfile.mkdtemp(prefix="dealreg-bench-logs-"))
    arrivals = logs / "arrivals.txt"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook_receiver", str(RECEIVER_PORT), str(arrivals)]
    )
    env = {"DEALREG_WEBHOOK_ALLOW_PRIVATE_URLS": "true", "DEALREG_WEBHOOK_POLL_SECONDS": "0.05"}
    with bench_database(args.database_url) as url:
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
            with ThreadPoolExecutor(args.senders) as pool:
                list(pool.map(register, range(args.events)))
            off.stop()
            registration.start()
            backlog = wait_for(args.events, 0)
            arrived = [float(r[1]) for r in backlog]
            rate = len(backlog) / (max(arrived) - min(arrived))

            # latency at a steady rate
            first = len(backlog)
            for n in range(args.steady):
                started = time.perf_counter()
                register(args.events + n)
                time.sleep(max(0.0, 1 / args.rate - (time.perf_counter() - started)))
            steady = wait_for(args.steady, first)
            latency = [
                (float(r[1]) - datetime.fromisoformat(r[2]).timestamp()) * 1000 for r in steady
            ]
            q = statistics.quantiles(latency, n=100, method="inclusive")
            print("| backlog | deliveries/s | steady events | rate /s | p50 ms | p99 ms |")
            print("|---:|---:|---:|---:|---:|---:|")
            print(
                f"| {args.events:,} | {rate:.0f} | {args.steady:,} | {args.rate}"
                f" | {q[49]:.0f} | {q[98]:.0f} |"
            )
        finally:
            registration.stop()
            tiering.stop()
            receiver.terminate()
    print(f"(service logs in {logs})")


if __name__ == "__main__":
    main()
