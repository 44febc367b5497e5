"""The benchmark suite, one figure table: ``make bench`` (``python -m bench``).

Each part runs the services as real processes on a database of its own (an embedded
PostgreSQL on TCP unless ``--database-url`` or BENCH_DATABASE_URL names a server) and adds its
figures to ``--results`` (JSON); the table of every figure is printed at the end, as
BENCHMARKS.md shows it. ``--quick`` runs the small sizes only (minutes rather than hours).
``--only`` runs some parts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import bulk_import, lag, replay, saves, throughput, webhook_delivery
from bench.report import Figure, Results, record, table

Part = Callable[[str | None, bool], list[Figure]]

PARTS: dict[str, Part] = {
    "throughput": lambda url, quick: throughput.run(
        [10_000] if quick else [10_000, 100_000, 1_000_000], url
    ),
    "replay": lambda url, quick: replay.run(url, 100_000 if quick else 1_000_000),
    "lag": lambda url, quick: lag.run(url, seconds=15 if quick else 30),
    "bulk_import": lambda url, quick: bulk_import.run(url, rows_count=2_000 if quick else 10_000),
    "webhooks": lambda url, quick: webhook_delivery.run(url, events=1_000 if quick else 5_000),
    "saves": lambda url, quick: saves.run(url),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--results", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=sorted(PARTS), default=list(PARTS))
    args = parser.parse_args()
    command = "python -m bench " + " ".join(sys.argv[1:])
    for name in args.only:
        started = time.perf_counter()
        print(f"## {name}", flush=True)
        record(PARTS[name](args.database_url, args.quick), args.results, command)
        print(f"({name}: {time.perf_counter() - started:.0f} s)\n", flush=True)
    print(f"## All figures ({args.results})\n")
    print(table(Results.load(args.results).figures))


if __name__ == "__main__":
    main()
