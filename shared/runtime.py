"""A running service: its log, the followers that keep its projections, and its clock.

Each service's ``service.py`` builds one of these from settings (the one bootstrap); the API,
the CLI and the tests all go through it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql
from psycopg.rows import dict_row

from shared.clock import ClockWorker, ServiceClock
from shared.contracts import PublishedEvent, PublishedLanguage
from shared.database import Database, connect_database
from shared.eventlog import ServiceApplication, open_log
from shared.projections import View
from shared.settings import ServiceSettings
from shared.stuck_events import StuckEvent, StuckEvents
from shared.subscriptions import Follower, Source

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
"""Told how many more events have been applied."""


def own_log(app: ServiceApplication, view: type[View] | None = None) -> Source:
    """A service's own log, decoded into its own domain events; for a view, only the events it
    handles are read (a view of contracts has no use for every registration)."""
    recorder = app.recorder
    assert isinstance(recorder, PostgresApplicationRecorder)
    return Source(app.name, recorder, app.decode, topics=view.topics() if view else ())


def published_log(
    database: Database,
    log: str,
    contracts: list[type[PublishedEvent]],
    *,
    recorder: PostgresApplicationRecorder | None = None,
) -> Source:
    """Another service's log, of which only the published events named are read (through the
    reader of another source of the same log, if given)."""
    language = PublishedLanguage(log, contracts)
    recorder = recorder or open_log(database, log)
    return Source(log, recorder, language.decode, topics=language.topics)


class WorkerIsRunningError(RuntimeError):
    pass


@dataclass(frozen=True)
class TableDifference:
    table: str
    only_live: int
    only_rebuilt: int
    live_rows: list[dict[str, Any]] = field(default_factory=list)
    """Some rows only the live table holds (up to ``SAMPLE_ROWS``)."""
    rebuilt_rows: list[dict[str, Any]] = field(default_factory=list)


SAMPLE_ROWS = 20


@dataclass(frozen=True)
class RebuildReport:
    service: str
    schema: str
    events_applied: int
    differences: list[TableDifference]

    @property
    def identical(self) -> bool:
        return not any(d.only_live or d.only_rebuilt for d in self.differences)


@dataclass
class ServiceRuntime:
    name: str
    settings: ServiceSettings
    database: Database
    app: ServiceApplication
    followers: list[Follower]
    clock: ServiceClock
    dispatcher: Any = None
    """The webhook dispatcher (``shared.webhooks.delivery.Dispatcher``), when the service
    delivers webhooks."""
    _clock_worker: ClockWorker | None = None
    _closed: bool = False

    @property
    def database_url(self) -> str:
        return self.database.url

    @property
    def schema(self) -> str:
        return self.settings.db_schema

    def start(self) -> None:
        for follower in self.followers:
            follower.start()
        self._clock_worker = ClockWorker(
            self.clock, self.database_url, self.settings.clock_interval_seconds
        )
        self._clock_worker.start()
        if self.dispatcher is not None:
            self.dispatcher.start()

    def stop(self) -> None:
        # All at once: each worker takes a moment to look up from what it waits on (LISTEN, a
        # poll), which one after the other made a service's shutdown take a second or more.
        workers: list[Any] = [self.dispatcher, self._clock_worker, *self.followers]
        running = [worker for worker in workers if worker is not None]
        with ThreadPoolExecutor(len(running), thread_name_prefix="stop") as pool:
            list(pool.map(lambda worker: worker.stop(), running))

    def close(self) -> None:
        self.stop()
        self.app.close()
        if self._closed:
            return
        self._closed = True
        self.database.close()
        if self.database.embedded_server is not None:  # stops it if this process was its last
            self.database.embedded_server.cleanup()

    def sync(self) -> None:
        """Bring every projection up to the logs it follows."""
        for follower in self.followers:
            follower.sync()

    def stuck_events(self) -> list[StuckEvent]:
        """Events this service's followers are stuck at, whichever replica leads them."""
        return StuckEvents(self.database).unresolved(follower.name for follower in self.followers)

    def view_followers(self) -> list[Follower]:
        return [f for f in self.followers if isinstance(f.target, View)]

    def rebuild(
        self, into_schema: str | None = None, *, progress: Progress | None = None
    ) -> RebuildReport:
        """Rebuild every projection from the logs.

        In place, the live workers must be stopped (their advisory locks are checked). Into
        another schema, the live projections are left alone and compared with the rebuilt ones.
        """
        if into_schema is None:
            return self._rebuild_in_place(progress)
        return self._rebuild_beside(into_schema, progress)

    def views(self) -> dict[View, list[Follower]]:
        """Each view with the followers that feed it (a view may read several logs)."""
        views: dict[View, list[Follower]] = {}
        for follower in self.view_followers():
            assert isinstance(follower.target, View)
            views.setdefault(follower.target, []).append(follower)
        return views

    def _rebuild_in_place(self, progress: Progress | None) -> RebuildReport:
        with ExitStack() as held:
            for followers in self.views().values():
                for follower in followers:
                    if not held.enter_context(follower.leadership.try_hold()):
                        raise WorkerIsRunningError(
                            f"{follower.name} is being kept by a running {self.name} service; "
                            "stop it first, or rebuild into another schema to compare"
                        )
            applied = _each_view(
                lambda view, followers: _replay(view, followers, progress), self.views()
            )
        return RebuildReport(self.name, self.schema, sum(applied), [])

    def rebuild_size(self) -> int:
        """How many events a rebuild of every view reads."""
        return sum(f.source.pending_after(0) for fs in self.views().values() for f in fs)

    def _rebuild_beside(self, schema: str, progress: Progress | None) -> RebuildReport:
        if schema == self.schema:
            raise ValueError("rebuild into a schema other than the live one")
        differences: list[TableDifference] = []
        # A pool of its own: the rebuilt views live in another schema.
        database = connect_database(
            self.database.url, schema, min_connections=1, max_connections=2 * REBUILD_THREADS
        )

        def rebuild(live: View, followers: list[Follower]) -> int:
            rebuilt = type(live).open(database)
            beside = [Follower(f.source, rebuilt, self.database) for f in followers]
            applied = _replay(rebuilt, beside, progress)
            found = compare_tables(self.database_url, live, rebuilt)
            for _ in range(3):
                if not any(d.only_live or d.only_rebuilt for d in found):
                    break
                # The live service may have moved on while this ran: bring both to the
                # same end of the logs; what still differs then is a real difference.
                for follower in followers:
                    follower.sync()
                applied += sum(f.catch_up(progress=progress) for f in beside)
                found = compare_tables(self.database_url, live, rebuilt)
            differences.extend(found)
            return applied

        try:
            applied = _each_view(rebuild, self.views())
        finally:
            database.close()
        return RebuildReport(self.name, schema, sum(applied), differences)


def _replay(view: View, followers: list[Follower], progress: Progress | None) -> int:
    """Empty a view and let it take every event of its logs again."""
    view.drop()
    for follower in followers:
        follower.forget_progress()
    applied = sum(
        follower.catch_up(batch_size=REPLAY_BATCH, progress=progress) for follower in followers
    )
    view.create_indexes()
    return applied


REPLAY_BATCH = 2000
"""Events a rebuild reads and applies in one transaction."""
REBUILD_THREADS = 2


def _each_view(
    work: Callable[[View, list[Follower]], int], views: dict[View, list[Follower]]
) -> list[int]:
    """Two views at a time: while one waits for the database, the other decodes and computes.
    More would only hold more connections (each view has a pool of its own, and the services
    may be running beside it) for the same interpreter lock."""
    with ThreadPoolExecutor(max_workers=REBUILD_THREADS, thread_name_prefix="rebuild") as pool:
        return list(pool.map(lambda item: work(*item), views.items()))


def compare_tables(database_url: str, live: View, rebuilt: View) -> list[TableDifference]:
    differences = []
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for table in live.tables:
            a, b = live.qualified(table), rebuilt.qualified(table)
            counts: list[int] = []
            samples: list[list[dict[str, Any]]] = []
            for left, right in ((a, b), (b, a)):
                only_left = sql.SQL("SELECT * FROM {} EXCEPT ALL SELECT * FROM {}").format(
                    left, right
                )
                row = conn.execute(
                    sql.SQL("SELECT count(*) AS n FROM ({}) d").format(only_left)
                ).fetchone()
                counts.append(int(row["n"]) if row else 0)
                samples.append(
                    conn.execute(
                        sql.SQL("{} LIMIT {}").format(only_left, sql.Literal(SAMPLE_ROWS))
                    ).fetchall()
                    if counts[-1]
                    else []
                )
            differences.append(TableDifference(table, counts[0], counts[1], *samples))
    return differences
