"""Saves per second through a service's event log, and what the recorder's table lock costs.

Every save goes through a ``ServiceApplication`` (``shared/eventlog.py``), as the services'
do: the `eventsourcing` PostgreSQL recorder locks the events table (``LOCK TABLE ... IN
EXCLUSIVE MODE``) in every inserting transaction, so that positions become visible in the order
they were given and a follower never passes over a gap that fills in later, and our recorder
extends the log's hash chain (``shared/audit/chain.py``) under that lock. Each save records new
small aggregates of one event each, for ``--seconds`` per measurement:

- ``product``: the recorder the services use (hash chain, table lock);
- ``fewer-trips``: the product's recorder with two round trips fewer under the lock (``NOTIFY``
  before it; the chain's head read by the statement that inserts the events);
- ``library``: `eventsourcing`'s own recorder (table lock, no chain, all in one pipeline);
- ``unlocked``: the product's recorder without the table lock: what the lock costs (unsafe:
  followers could skip events, and the chain would fork);
- ``advisory``: the product's recorder with ``pg_advisory_xact_lock`` (a key per log) in place
  of ``LOCK TABLE``: writers in the same order, and no conflict with (auto)vacuum or analyze,
  whose ``SHARE UPDATE EXCLUSIVE`` lock the table's ``EXCLUSIVE`` lock waits for.

with 1, 2, 4 and 8 threads in one process, with 2 processes of one thread, and (``product``,
one thread) with ``--batches`` events per save.

    python -m bench.saves --seconds 3 --results results.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import Environment, EnvType, get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Literal

from bench.report import Figure, record
from bench.services import bench_database
from shared.audit.chain import GENESIS, ChainedApplicationRecorder, link, verify_chain
from shared.database import connect_database
from shared.eventlog import ServiceApplication

VARIANTS = ("product", "fewer-trips", "library", "unlocked", "advisory")


class Tick(Aggregate):
    """A small aggregate: one event, one integer."""

    def __init__(self, n: int) -> None:
        self.n = n


class Timed(threading.local):
    acquired = 0.0


_timed = Timed()
_totals = {"wait": 0.0, "hold": 0.0, "saves": 0.0}
_totals_lock = threading.Lock()


def _add(wait: float = 0.0, hold: float = 0.0, saves: int = 0) -> None:
    with _totals_lock:
        _totals["wait"] += wait
        _totals["hold"] += hold
        _totals["saves"] += saves


class TimedRecorder(ChainedApplicationRecorder):
    """The services' recorder, timing how long taking the table lock takes (its two statements,
    ``SET LOCAL lock_timeout`` and ``LOCK TABLE``: two round trips, plus any wait) and how long
    it is held (from granted to committed). Its statements are sent one by one, not pipelined,
    so these are the statements' own times."""

    def _lock_table(self, curs: Cursor[DictRow]) -> None:
        started = time.perf_counter()
        super()._lock_table(curs)
        _timed.acquired = time.perf_counter()
        _add(wait=_timed.acquired - started)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        positions = super().insert_events(stored_events, **kwargs)
        _add(hold=time.perf_counter() - _timed.acquired, saves=1)
        return positions


class FewerTripsRecorder(TimedRecorder):
    """The services' recorder with two round trips fewer under the lock: ``NOTIFY`` before it
    (delivered at commit anyway), and the chain's head read in the statement that inserts the
    events (its snapshot is taken after the lock was granted, so the head is the latest)."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._insert_and_head = SQL(
            "WITH inserted AS ({}) SELECT notification_id,"
            " (SELECT hash FROM {} ORDER BY position DESC LIMIT 1) AS head FROM inserted"
        ).format(self.insert_events_statement, self.chain)

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        self._notify_channel(curs)
        self._lock_table(curs)
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        curs.execute(self._insert_and_head, (rows,))

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        rows = curs.fetchall()
        previous = bytes(rows[0]["head"]) if rows and rows[0]["head"] is not None else GENESIS
        links = []
        for row, stored in zip(rows, stored_events, strict=True):
            previous = link(
                previous,
                row["notification_id"],
                stored.originator_id,  # type: ignore[arg-type]
                stored.originator_version,
                stored.topic,
                stored.state,
            )
            links.append((row["notification_id"], previous))
        self._extend(curs, links)
        return [position for position, _ in links]


class UnlockedRecorder(ChainedApplicationRecorder):
    """The services' recorder without its table lock (for measuring; never for use)."""

    def _lock_table(self, curs: Cursor[DictRow]) -> None:
        pass


class AdvisoryRecorder(TimedRecorder):
    """The services' recorder with a transaction-scoped advisory lock per log instead of the
    table lock: the same order for writers, no conflict with (auto)vacuum or analyze."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        key = SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
            Literal(self.events_table_name)
        )
        self.lock_table_statements = [self.lock_table_statements[0], key]


RECORDERS: dict[str, type[PostgresApplicationRecorder]] = {
    "product": TimedRecorder,
    "library": PostgresApplicationRecorder,
    "unlocked": UnlockedRecorder,
    "advisory": AdvisoryRecorder,
    "fewer-trips": FewerTripsRecorder,
}


class Saves(ServiceApplication):
    """A log of its own per variant (``saves_<variant>_events``)."""

    variant = "product"

    def __init__(self, database_url: str, variant: str, pool_size: int) -> None:
        self.variant = variant
        self.name = f"saves_{variant.replace('-', '_')}"
        super().__init__(
            connect_database(database_url, min_connections=pool_size, max_connections=pool_size)
        )

    def close(self) -> None:
        super().close()
        self.database.close()

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        topic = get_topic(RECORDERS[self.variant])
        return super().construct_env(name, {**(env or {}), "APPLICATION_RECORDER_TOPIC": topic})


@dataclass
class Measured:
    rate: float = 0.0
    """Events per second (processes running at once: the sum of theirs)."""
    events: int = 0
    thread_seconds: float = 0.0
    wait: float = 0.0
    """Seconds spent taking the table lock, all threads together (``product`` only)."""
    hold: float = 0.0
    """Seconds the table lock was held, all saves together (``product`` only)."""
    saves: float = 0.0
    cpu: float = 0.0
    """This process's CPU seconds (all its threads)."""

    def __add__(self, other: Measured) -> Measured:
        return Measured(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def saves(
    url: str, variant: str, threads: int, batch: int, start: float, seconds: float
) -> Measured:
    """Events saved from ``start`` for ``seconds`` by ``threads`` threads of this process."""
    app = Saves(url, variant, pool_size=threads)

    def loop(_: int) -> int:
        count = 0
        time.sleep(max(0.0, start - time.time()))
        end = max(start, time.time()) + seconds  # a process that came late still runs its time
        while time.time() < end:
            app.save(*[Tick(count + i) for i in range(batch)])
            count += batch
        return count

    try:
        _totals.update(wait=0.0, hold=0.0, saves=0.0)
        cpu = time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            events = sum(pool.map(loop, range(threads)))
        cpu = time.process_time() - cpu
        return Measured(events / seconds, events, seconds * threads, cpu=cpu, **_totals)
    finally:
        app.close()


def measure(url: str, variant: str, threads: int, processes: int, batch: int, s: float) -> Measured:
    if processes == 1:
        return saves(url, variant, threads, batch, time.time() + 0.5, s)
    start = time.time() + 5  # the processes import and connect first
    arguments = [(url, variant, threads, batch, start, s)] * processes
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return sum(pool.starmap(saves, arguments), Measured())


def run(
    database_url: str | None,
    *,
    seconds: float = 3.0,
    threads: tuple[int, ...] = (1, 2, 4, 8),
    batches: tuple[int, ...] = (10, 100),
) -> list[Figure]:
    figures: list[Figure] = []
    with bench_database(database_url, max_connections=100) as url:
        for variant in VARIANTS:
            Saves(url, variant, pool_size=1).close()  # the tables, before anyone times
        for variant in VARIANTS:
            for n in threads:
                m = measure(url, variant, n, 1, 1, seconds)
                figures.append(_figure(f"{variant}: single-event saves, {n} thread(s)", m, 1))
            m = measure(url, variant, 1, 2, 1, seconds)
            figures.append(_figure(f"{variant}: single-event saves, 2 processes", m, 1))
        for batch in batches:
            m = measure(url, "product", 1, 1, batch, seconds)
            figures.append(_figure(f"product: saves of {batch} events, 1 thread", m, batch))
        for variant in VARIANTS:
            if issubclass(RECORDERS[variant], ChainedApplicationRecorder):
                log = f"saves_{variant.replace('-', '_')}"
                verified = verify_chain(url, "public", log)
                broken = verified.first_break
                figures.append(
                    Figure(
                        f"{variant}: hash chain verified",
                        verified.events,
                        "events",
                        target="intact",
                        met=verified.intact,
                        note=f"first break: {broken.kind} at {broken.position}" if broken else "",
                    )
                )
    return figures


def _figure(name: str, m: Measured, batch: int) -> Figure:
    saved = max(m.events / batch, 1)
    notes = [f"{m.rate / batch:,.0f} saves/s"] if batch > 1 else []
    notes.append(f"client CPU {m.cpu / saved * 1000:.2f} ms per save")
    if m.saves:  # the variants that time their lock
        notes.append(
            f"table lock held {m.hold / m.saves * 1000:.2f} ms per save (mean); the threads"
            f" spent {m.wait / m.thread_seconds:.0%} of their time taking it"
        )
    return Figure(name, m.rate, "events/s", note="; ".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--results", type=Path)
    args: Any = parser.parse_args()
    figures = run(
        args.database_url,
        seconds=args.seconds,
        threads=tuple(args.threads),
        batches=tuple(args.batches),
    )
    record(figures, args.results, "python -m bench.saves " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
