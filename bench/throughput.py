"""Registration throughput and latency under load, against a bare FastAPI + asyncpg baseline
measured in the same run on the same machine.

The tiering and registration services run as real processes (``dealreg serve``) on a database
of their own; the baseline (``bench.baseline``) is a third. The log is grown to each size
(``--sizes``) through the domain, as ``bench.registration_latency`` does, the registration
service's views rebuilt from it (the replay rate of that log is a figure too), the service
started, and then, from a separate process (``bench.loadgen``):

- the maximum rate: closed loop at 1, 2, 4, ... ``--concurrency`` clients, ``--step`` seconds
  each, the best throughput kept; the same for the baseline;
- the latency at half that rate: open loop for ``--duration`` seconds, timed from when each
  request was due; the baseline at the same rate;
- the latency of one client at a time (concurrency 1), to compare sizes.

The requests are those of ``bench.registration_latency``: 80% fresh customers, 10% conflicts
with another partner's customer, 10% near-duplicate names; every one must answer 201. The
generator's ceiling is measured against a null server (``bench.nullserver``).

``--profile DIR`` samples the registration service with py-spy (``--gil``: where its CPU goes)
during the maximum-rate sweep, one collapsed-stack file per size (``throughput-<size>.txt``).
The first of ``--levels`` should be 1: its latency is the one compared between sizes.

    python -m bench.throughput --sizes 10000 100000 1000000 --results results.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.registration_latency import enrol, grow, request
from bench.replay import rebuild, replayed
from bench.report import Figure, record
from bench.services import SECRET, Service, bench_database, free_port, profiled
from shared.auth import Role, mint_token

LEVELS = (1, 2, 4, 8, 16, 32)


@dataclass
class Load:
    """What one run of the load generator measured (its JSON, the fields used here)."""

    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    concurrency: int
    first_error: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> Load:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


class Requests:
    """The request bodies, written to JSON-lines files for the generator; each file holds
    registrations not sent before (fresh names and domains go on from the last file)."""

    def __init__(self, folder: Path, partners: list[uuid.UUID], names: list[str]) -> None:
        self.folder, self.partners, self.names = folder, partners, names
        self.tokens = {
            p: mint_token(SECRET, Role.PARTNER, subject="bench", partner_id=p) for p in partners
        }
        self.sent = 0
        self.rng = random.Random(len(names))

    def file(self, count: int) -> Path:
        path = self.folder / f"requests-{self.sent}.jsonl"
        with path.open("w") as out:
            for _ in range(count):
                partner, body = request(self.rng, self.partners, self.names, self.sent)
                self.sent += 1
                line = {"path": "/v1/registrations", "body": body, "token": self.tokens[partner]}
                out.write(json.dumps(line) + "\n")
        return path


def generate(url: str, requests: Path, *options: str) -> Load:
    """Run the load generator as a process of its own; what it measured."""
    command = [sys.executable, "-m", "bench.loadgen", url, str(requests), *options]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed: {done.stderr[-2000:]}")
    return Load.of(json.loads(done.stdout))


def maximum(
    target: Service, requests: Requests, step: float, levels: Sequence[int], guess: float
) -> tuple[Load, list[Load]]:
    """The best closed-loop throughput over ``levels`` of concurrency, and every level's."""
    loads = []
    for clients in levels:
        count = int(guess * (step + 1) * 1.5) + 100  # enough fresh ones at the rate expected
        load = generate(
            target.url, requests.file(count), "--closed", str(clients), "--duration", str(step)
        )
        loads.append(load)
        print(
            f"  {target.name} closed {clients:>3}: {load.rate:8.1f}/s p50 {load.p50_ms:7.1f} ms"
            f" p99 {load.p99_ms:7.1f} ms errors {load.errors}",
            flush=True,
        )
        guess = max(guess, load.rate * 1.3)
        best = max(loads, key=lambda x: x.rate)
        if load.rate < 0.8 * best.rate:  # past the knee
            break
    return max(loads, key=lambda x: x.rate), loads


def steady(target: Service, requests: Requests, rate: float, duration: float) -> Load:
    path = requests.file(int(rate * duration * 1.2) + 100)
    load = generate(target.url, path, "--rate", f"{rate:.1f}", "--duration", str(duration))
    print(
        f"  {target.name} open at {rate:.0f}/s: achieved {load.rate:.1f}/s p50 {load.p50_ms:.1f}"
        f" ms p99 {load.p99_ms:.1f} ms errors {load.errors}",
        flush=True,
    )
    return load


def ceiling(folder: Path, requests: Requests, step: float) -> Load:
    """The generator against a server that answers at once: its own maximum rate."""
    port = free_port()
    null = Service(
        "null",
        "",
        port,
        folder / "null.log",
        command=[sys.executable, "-m", "bench.nullserver"],
    )
    null.process = subprocess.Popen([*null.command, str(port)])
    try:
        time.sleep(1)
        path = requests.file(2000)  # a pool, sent round and round
        closed = ("--closed", "--duration", str(step))
        runs = [generate(null.url, path, *closed[:1], str(c), *closed[1:]) for c in (8, 32)]
        return max(runs, key=lambda x: x.rate)
    finally:
        null.stop()


def errors_note(*loads: Load) -> str:
    wrong = [load for load in loads if load.errors]
    if not wrong:
        return ""
    return f" {sum(w.errors for w in wrong)} non-201 answers, e.g. {wrong[0].first_error[:200]}"


def run(
    sizes: Sequence[int],
    database_url: str | None,
    *,
    duration: float = 20.0,
    step: float = 5.0,
    levels: Sequence[int] = LEVELS,
    profile: Path | None = None,
) -> list[Figure]:
    folder = Path(tempfile.mkdtemp(prefix="dealreg-bench-throughput-"))
    figures: list[Figure] = []
    fastest = 0.0
    unloaded: dict[int, Load] = {}
    with bench_database(database_url, max_connections=200 if database_url is None else None) as url:
        tiering = Service("tiering", url, free_port(), folder / "tiering.log")
        registration = Service("registration", url, free_port(), folder / "registration.log")
        baseline = Service(
            "baseline",
            url,
            free_port(),
            folder / "baseline.log",
            command=[sys.executable, "-m", "bench.baseline"],
        )
        try:
            tiering.start()
            baseline.start()
            partners = enrol(tiering)
            names: list[str] = []
            requests = Requests(folder, partners, names)
            for size in sorted(sizes):
                print(f"# {size:,} existing registrations", flush=True)
                grow(url, partners, names, size)
                # The service is stopped: its views are rebuilt from the grown log (a replay,
                # measured), rather than caught up event by event as it starts.
                log_events, applied, seconds = rebuild(url)
                figures.append(replayed(log_events, applied, seconds))
                registration.start()
                # Tiering follows registrations too: measured only once it has taken the grown
                # log (else its catch-up shares the cores with the measurement), and on tables
                # vacuumed and analysed, as autovacuum would have them in a running system.
                tiering.caught_up()
                registration.caught_up()
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
                out = profile / f"throughput-{size}.txt" if profile else None
                with profiled(registration, out, gil=True):
                    best, loads = maximum(registration, requests, step, levels, guess=200)
                unloaded[size] = loads[0]
                base, _ = maximum(baseline, requests, step, levels, guess=2000)
                half = best.rate / 2
                open_loop = steady(registration, requests, half, duration)
                base_open = steady(baseline, requests, half, duration)
                registration.stop()
                fastest = max(fastest, best.rate, base.rate)
                figures += [
                    Figure(
                        f"registration throughput, {size:,} existing",
                        best.rate,
                        "req/s",
                        baseline=base.rate,
                        target="≥ 0.5x baseline",
                        met=best.rate >= 0.5 * base.rate and not best.errors,
                        note=f"closed loop, best of concurrency {list(levels)}: registration at"
                        f" {best.concurrency}, baseline at {base.concurrency}."
                        + errors_note(best, base),
                    ),
                    Figure(
                        f"registration p99 at half the maximum rate, {size:,} existing",
                        open_loop.p99_ms,
                        "ms",
                        baseline=base_open.p99_ms,
                        target="≤ 100 ms",
                        met=open_loop.p99_ms <= 100 and not open_loop.errors,
                        note=f"open loop at {half:.0f}/s for {duration:.0f} s (achieved"
                        f" {open_loop.rate:.0f}/s), timed from when each request was due;"
                        f" p50 {open_loop.p50_ms:.1f} ms; the baseline at the same rate."
                        + errors_note(open_loop, base_open),
                    ),
                ]
            smallest = min(unloaded)
            for size in sorted(unloaded)[1:]:
                ratio = unloaded[size].p50_ms / unloaded[smallest].p50_ms
                figures.append(
                    Figure(
                        f"registration latency at {size:,} / at {smallest:,} existing",
                        ratio,
                        "x",
                        target="≤ 1.5x",
                        met=ratio <= 1.5,
                        note=f"p50 of one client at a time: {unloaded[size].p50_ms:.1f} ms"
                        f" against {unloaded[smallest].p50_ms:.1f} ms",
                    )
                )
        finally:
            registration.stop()
            baseline.stop()
            tiering.stop()
        top = ceiling(folder, requests, step)
    figures.append(
        Figure(
            "load generator ceiling / highest rate measured",
            top.rate / fastest if fastest else 0.0,
            "x",
            target="≥ 3x",
            met=fastest > 0 and top.rate >= 3 * fastest,
            note=f"the generator alone, against a null server: {top.rate:,.0f} req/s at"
            f" concurrency {top.concurrency}; the highest rate it measured: {fastest:,.0f} req/s",
        )
    )
    print(f"(logs and request files in {folder})")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--duration", type=float, default=20.0, help="open loop, seconds")
    parser.add_argument("--step", type=float, default=5.0, help="each closed-loop level, s")
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--results", type=Path)
    parser.add_argument("--profile", type=Path, help="py-spy profiles into this folder")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    figures = run(
        args.sizes,
        args.database_url,
        duration=args.duration,
        step=args.step,
        levels=args.levels,
        profile=args.profile,
    )
    record(figures, args.results, "python -m bench.throughput " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
