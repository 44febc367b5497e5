"""Replay: how fast a service's projections are rebuilt from its log.

Records ``--events`` events in the registration log (registrations, each with the customer
claim it protects: two events each, through the domain and the event store, as ``grow`` does
for the latency benchmarks), then rebuilds every projection of the registration service in
place (``dealreg rebuild registration``: the deals and review queue, contracts, the webhook
outbox, the audit index) and reports the log's events per second of wall time.

    python -m bench.replay --events 1000000

The database is a server of its own (``bench_database``) unless ``--database-url`` (or
BENCH_DATABASE_URL) names one; ``--keep`` keeps it, and ``--reuse URL`` rebuilds a kept one
again without seeding. To profile it: ``py-spy record --format raw -o replay.txt --
python -m bench.replay ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from bench.registration_latency import grow
from bench.report import Figure, record
from bench.services import bench_database
from services.registration.service import build_runtime
from shared.settings import ServiceSettings

TARGET = 20_000


def seed(database_url: str, events: int) -> float:
    """Registrations and their claims until the log holds ``events``; returns seconds."""
    partners = [uuid.uuid4() for _ in range(200)]
    return grow(database_url, partners, [], events // 2)


def rebuild(database_url: str) -> tuple[int, int, float]:
    """Rebuild the registration service's projections in place; returns the events in the
    log, the events the views took (a view reads only the events it handles) and seconds."""
    runtime = build_runtime(ServiceSettings(database_url=database_url))
    try:
        log_events = runtime.app.recorder.max_notification_id() or 0
        started = time.perf_counter()
        report = runtime.rebuild()
        return log_events, report.events_applied, time.perf_counter() - started
    finally:
        runtime.close()


def run(
    database_url: str | None, events: int, *, keep: bool = False, reuse: str | None = None
) -> list[Figure]:
    with ExitStack() as stack:
        if reuse:
            url, seeded = reuse, None
        else:
            url = stack.enter_context(bench_database(database_url, keep=keep))
            seeded = seed(url, events)
            if keep:
                print(f"# kept: --reuse {url}", flush=True)
        log_events, applied, seconds = rebuild(url)
    figure = replayed(log_events, applied, seconds)
    if seeded is not None:
        figure = replace(figure, note=f"{figure.note}; seeding took {seeded:.0f} s")
    return [figure]


def replayed(log_events: int, applied: int, seconds: float) -> Figure:
    rate = log_events / seconds
    return Figure(
        f"replay of a {log_events:,}-event registration log",
        rate,
        "events/s",
        target=f"≥ {TARGET:,} events/s",
        met=rate >= TARGET,
        note=f"every view of the registration service rebuilt in {seconds:.0f} s"
        f" ({applied:,} events taken by the views, each reading the events it handles)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", metavar="URL", help="rebuild a kept database again")
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    figures = run(args.database_url, args.events, keep=args.keep, reuse=args.reuse)
    record(figures, args.results, "python -m bench.replay " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
