"""Following a log: catch up, then LISTEN/NOTIFY; exactly once; one active worker at a time.

A ``Follower`` feeds the events of one log (``Source``) to one ``Target`` (a view, or a
process application that records its own decisions). The target commits its effects and the
tracking position in one transaction, so a restarted follower resumes where it stopped, and an
event is never applied twice. Only the follower holding a PostgreSQL advisory lock runs; any
other replica waits as a hot standby.

An event the target fails to apply again and again (not for a lost connection) leaves the
follower stuck there, recorded in ``shared.stuck_events``, until an operator retries or skips it
(decision 17).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self

import psycopg
from eventsourcing.persistence import IntegrityError, Notification, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from shared.audit.causes import caused_by, caused_by_event
from shared.database import Database
from shared.stuck_events import StuckEvent, StuckEvents, printable

log = logging.getLogger(__name__)


class Target(Protocol):
    @property
    def name(self) -> str: ...

    def max_tracking_id(self, application_name: str) -> int | None: ...

    def process(self, event: Any, tracking: Tracking) -> None: ...

    def insert_tracking(self, tracking: Tracking) -> None:
        """Move past an event without applying it (an operator skipped it)."""


@dataclass(frozen=True)
class Source:
    """A log to follow: its name, a reader, the topics wanted (all, if empty) and a decoder."""

    log: str
    recorder: PostgresApplicationRecorder
    decode: Callable[[Notification], Any]
    topics: Sequence[str] = ()

    def pending_after(self, position: int | None, through: int | None = None) -> int:
        """How many wanted events the log holds after a position (up to ``through``)."""
        datastore = self.recorder.datastore
        statement = SQL("SELECT count(*) AS n FROM {}.{} WHERE notification_id > %s").format(
            Identifier(datastore.schema), Identifier(self.recorder.events_table_name)
        )
        params: list[Any] = [position or 0]
        if through is not None:
            statement += SQL(" AND notification_id <= %s")
            params.append(through)
        if self.topics:
            statement += SQL(" AND topic = ANY(%s)")
            params.append(list(self.topics))
        with datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params)
            row = curs.fetchone()
            assert row is not None
            return int(row["n"])

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0


def advisory_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


class _OnePerDatabase:
    """One instance per process and database URL, made when first asked for."""

    _instances: ClassVar[dict[tuple[type, str], Any]] = {}
    _instances_guard = threading.Lock()

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    @classmethod
    def of(cls, database_url: str) -> Self:
        with _OnePerDatabase._instances_guard:
            found = _OnePerDatabase._instances.get((cls, database_url))
            if found is None:
                found = _OnePerDatabase._instances[(cls, database_url)] = cls(database_url)
            assert isinstance(found, cls)
            return found


class _AdvisoryLocks(_OnePerDatabase):
    """One connection per process and database that holds all this process's advisory locks
    (a follower or clock each needs one lock, not one connection: connections are few).

    PostgreSQL lets a session take a lock it already holds, so this process's own holders are
    told apart here: a key already held in the process is not granted twice."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self._guard = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._held: set[int] = set()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
            self._held.clear()  # a new session holds nothing
        return self._conn

    def try_lock(self, key: int) -> bool:
        with self._guard:
            if key in self._held:
                return False
            row = self._connection().execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row and row[0]:
                self._held.add(key)
                return True
            return False

    def unlock(self, key: int) -> None:
        with self._guard:
            if key not in self._held:
                return
            self._held.discard(key)
            conn = self._conn
            if conn is not None and not conn.closed and not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


class Listener(_OnePerDatabase):
    """One LISTEN connection per process and database, for every follower of every log: a
    follower waits on an event that this connection sets when its log's channel is notified.

    A connection each (the library's subscription) held some twenty connections per service.
    After a lost connection every waiter is woken, since a notification may have been missed;
    a waiter also looks on its own now and then (``Follower.poll_seconds``)."""

    wait_seconds = 0.1
    """How long one wait for notifications lasts before new channels are listened to (a
    follower that starts waits for that, and a test starts many)."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self._guard = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None

    def subscribe(self, channel: str) -> threading.Event:
        """An event set whenever ``channel`` is notified (also set at once: look first)."""
        wake = threading.Event()
        wake.set()
        with self._guard:
            self._waiters.setdefault(channel, set()).add(wake)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"listen:{channel}", daemon=True
                )
                self._thread.start()
        return wake

    def unsubscribe(self, channel: str, wake: threading.Event) -> None:
        with self._guard:
            waiters = self._waiters.get(channel, set())
            waiters.discard(wake)
            if not waiters:
                self._waiters.pop(channel, None)

    def _channels(self) -> set[str]:
        with self._guard:
            return set(self._waiters)

    def _wake(self, channel: str | None = None) -> None:
        with self._guard:
            for name, waiters in self._waiters.items():
                if channel is None or name == channel:
                    for wake in waiters:
                        wake.set()

    def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                self._listen()
                backoff = 0.5
            except Exception:  # a lost connection: listen again, after a while
                log.warning("LISTEN connection lost; again in %.1fs", backoff, exc_info=True)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                self._wake()  # a notification may have been missed meanwhile
            with self._guard:  # decided under the guard that ``subscribe`` starts a thread in
                if not self._waiters:
                    self._thread = None
                    return

    def _listen(self) -> None:
        """Until nobody waits on any channel."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            listening: set[str] = set()
            while wanted := self._channels():
                for channel in wanted - listening:
                    conn.execute(SQL("LISTEN {}").format(Identifier(channel)))
                    self._wake(channel)  # anything recorded before LISTEN took effect
                for channel in listening - wanted:
                    conn.execute(SQL("UNLISTEN {}").format(Identifier(channel)))
                listening = wanted
                for notification in conn.notifies(timeout=self.wait_seconds):
                    self._wake(notification.channel)


class Leadership:
    """A session-level advisory lock, taken on the process's lock connection."""

    def __init__(self, database_url: str, name: str) -> None:
        self.database_url = database_url
        self.name = name
        self.key = advisory_key(name)
        self.standing_by = False
        """True while another process holds the lock and this one waits for it."""

    @contextmanager
    def hold(self, stopping: threading.Event, retry_seconds: float = 1.0) -> Iterator[bool]:
        """Wait until this process leads (yields True) or is told to stop (yields False)."""
        locks = _AdvisoryLocks.of(self.database_url)
        while not stopping.is_set():
            if locks.try_lock(self.key):
                self.standing_by = False
                try:
                    yield True
                finally:
                    locks.unlock(self.key)
                return
            self.standing_by = True
            stopping.wait(retry_seconds)
        yield False

    @contextmanager
    def try_hold(self) -> Iterator[bool]:
        locks = _AdvisoryLocks.of(self.database_url)
        acquired = locks.try_lock(self.key)
        try:
            yield acquired
        finally:
            if acquired:
                locks.unlock(self.key)


_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
"""Connection, rollback (deadlock, serialization), resources, lock not available, operator
intervention (shutdown, cancel), system: the same statement may well succeed later. Others
(data, a limit exceeded, a bug) fail the same way on every attempt."""


def is_transient(error: BaseException) -> bool:
    """A lost connection or a busy database: worth retrying for as long as it takes."""
    seen: BaseException | None = error
    for _ in range(10):  # the library wraps psycopg's errors (``raise ... from``)
        if seen is None:
            return False
        if isinstance(seen, psycopg.OperationalError):
            return seen.sqlstate is None or seen.sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
        if isinstance(seen, psycopg.InterfaceError | OSError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class EventNotApplied(Exception):
    """The target failed to apply this event (not for a lost connection)."""

    def __init__(self, follower: str, notification: Notification, error: BaseException) -> None:
        self.position = notification.id
        self.topic = notification.topic
        self.error = printable(f"{type(error).__name__}: {error}")
        super().__init__(f"{follower} cannot apply position {self.position}: {self.error}")


class FollowerStuckError(RuntimeError):
    """Asked to catch up, a follower is stuck at an event until an operator decides."""


class Follower:
    failures_before_stuck = 3
    """Failed attempts at one event (backing off in between) before waiting for an operator:
    one is not enough, a failure may come from a race that the next attempt does not meet."""
    decision_poll_seconds = 1.0
    """How often a stuck follower looks for an operator's decision."""

    poll_seconds = 10.0
    """How often a follower looks at its log unprompted: a notification is what wakes it, this
    only bounds how late it can be if one was lost."""

    def __init__(self, source: Source, target: Target, database: Database) -> None:
        """``database``: where the logs are (the stuck events are kept beside them)."""
        self.source = source
        self.target = target
        self.name = f"{target.name}<-{source.log}"
        self.leadership = Leadership(database.url, f"follower:{self.name}")
        self.stuck_events = StuckEvents(database)
        self.listener = Listener.of(database.url)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: threading.Event | None = None
        self._leading = False
        self._caught_up = False
        self.last_error: str | None = None
        self.failures = 0
        """Failed attempts to follow (lost connections too), since start."""
        self.stuck: StuckEvent | None = None
        """The event this process's worker is stuck at, waiting for an operator."""
        self._failing: tuple[int, int] | None = None
        """The position that failed last, and how many times in a row."""
        self._skipped: set[int] | None = None
        self._unresolved: int | None = None
        """The last position of a recorded stuck event not yet moved past."""
        self._applied_through = 0
        """A head of the log up to which every wanted event was found applied."""

    # The position is the last event of the source this target has taken effect for.
    def position(self) -> int:
        return self.target.max_tracking_id(self.source.log) or 0

    def pending(self) -> int:
        """Wanted events not yet applied. Counted from the log's head at the last count that
        found none, not from the position: a follower of rare topics (webhook endpoints) stays
        near the start of a log, and counting from there read the whole log, four times a
        second in every webhook dispatcher. Events become visible in the order of their
        positions (the recorder's table lock), so none can appear before that head later."""
        head = self.source.head()
        start = max(self.position(), self._applied_through)
        pending = self.source.pending_after(start, head) if start < head else 0
        if pending == 0:
            self._applied_through = max(self._applied_through, head)
        return pending

    def _apply(self, notification: Notification) -> None:
        event = self.source.decode(notification)
        self.target.process(event, Tracking(self.source.log, notification.id))

    def _apply_batch(self, notifications: Sequence[Notification]) -> None:
        """Events in order; a view takes them in one transaction (see ``View.process_many``)."""
        process_many = getattr(self.target, "process_many", None)
        if process_many is None:
            for notification in notifications:
                try:
                    self._apply(notification)
                except Exception as error:
                    if is_transient(error):
                        raise
                    raise EventNotApplied(self.name, notification, error) from error
            return
        process_many(
            [(self.source.decode(n), Tracking(self.source.log, n.id)) for n in notifications]
        )

    def _apply_many(self, notifications: Sequence[Notification]) -> None:
        """Events in order, except those an operator skipped; when a batch fails, each again
        on its own, to name the event that fails."""
        skipped = self._skipped_positions()
        if any(n.id in skipped for n in notifications):
            for notification in notifications:
                if notification.id in skipped:
                    self._move_past(notification.id)
                else:
                    self._apply_many([notification])
            return
        try:
            self._apply_batch(notifications)
        except EventNotApplied:
            raise
        except Exception as error:
            if is_transient(error):
                raise
            if len(notifications) == 1:
                raise EventNotApplied(self.name, notifications[0], error) from error
            for notification in notifications:
                self._apply_many([notification])
        if self._unresolved is not None and notifications[-1].id >= self._unresolved:
            self.stuck_events.passed(self.name, notifications[-1].id)
            self._unresolved = None

    def _skipped_positions(self) -> set[int]:
        if self._skipped is None:
            self._skipped = self.stuck_events.skipped(self.name)
        return self._skipped

    def _move_past(self, position: int) -> None:
        """Skip an event as an operator decided: the position moves on, nothing is applied."""
        self.target.insert_tracking(Tracking(self.source.log, position))
        self.stuck_events.passed(self.name, position)
        self._skipped_positions().add(position)

    def catch_up(
        self,
        batch_size: int = 500,
        stopping: threading.Event | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Apply every pending event now, in this thread. Caller must lead (or be alone)."""
        # Skips may have been decided in another process (while this one was stopped, or
        # before a rebuild): they hold for every catch-up.
        self._skipped = self.stuck_events.skipped(self.name)
        return self._catch_up(batch_size, stopping, progress)

    def forget_progress(self) -> None:
        """The target was emptied (a rebuild): read the log from its start again."""
        self._applied_through = 0

    def _catch_up(
        self,
        batch_size: int = 500,
        stopping: threading.Event | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Read from the later of the position and the head up to which every wanted event is
        known applied: a follower of rare topics (webhook endpoints) stays near the start of a
        log, and reading from its position read the whole log since, on every event anyone
        recorded. Events become visible in the order of their positions (the recorder inserts
        under a table lock), so every event up to a head read first is there to be read."""
        applied = 0
        while stopping is None or not stopping.is_set():
            head = self.source.head()
            notifications = self.source.recorder.select_notifications(
                start=max(self.position(), self._applied_through),
                limit=batch_size,
                stop=head,
                topics=self.source.topics,
                inclusive_of_start=False,
            )
            if notifications:
                self._apply_many(notifications)
                applied += len(notifications)
                if progress is not None:
                    progress(len(notifications))
            if len(notifications) < batch_size:
                self._applied_through = max(self._applied_through, head)
                return applied
        return applied

    def sync(self, timeout: float = 30.0) -> None:
        """Make sure the target reflects the whole source, whoever runs it."""
        with self.leadership.try_hold() as leading:
            if leading:
                self.catch_up()
                return
        deadline = time.monotonic() + timeout
        while self.pending():
            if self.stuck is not None:  # waiting would not help
                raise FollowerStuckError(self.stuck.describe())
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not catch up within {timeout}s")
            time.sleep(0.05)

    # --- the worker thread -------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        wake = self._wake
        if wake is not None:
            wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def ready(self) -> bool:
        """Caught up once since start; a standby is ready too (it serves reads)."""
        if self._caught_up or self.leadership.standing_by:
            return True
        if not self._leading:
            return False  # still connecting
        self._caught_up = self.pending() == 0
        return self._caught_up

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                with self.leadership.hold(self._stopping) as leading:
                    if not leading:
                        return
                    self._leading = True
                    self._lead()
                backoff = 0.5
            except Exception as error:  # the loop must outlive a lost connection or a bad event
                self.failures += 1
                self.last_error = repr(error)
                log.exception("follower %s failed; retrying in %.1fs", self.name, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                self._leading = False

    def _lead(self) -> None:
        """Follow; at an event that keeps failing, wait (still leading, so that no other
        replica tries it too) until an operator decides."""
        try:
            self._follow()
        except EventNotApplied as failed:
            position, times = self._failing or (failed.position, 0)
            times = times + 1 if position == failed.position else 1
            self._failing = (failed.position, times)
            if times < self.failures_before_stuck:
                raise
            self.failures += 1
            self.last_error = failed.error
            self._stuck_until_decided(failed, times)

    def _stuck_until_decided(self, failed: EventNotApplied, times: int) -> None:
        stuck = self.stuck_events.record(
            self.name, failed.position, self.source.log, failed.topic, failed.error, times
        )
        self.stuck, self._unresolved = stuck, failed.position
        log.error(
            "follower %s is stuck at %s position %d (%s) after %d failures: %s. It waits for "
            "an operator: `dealreg followers retry '%s'` once the cause is fixed, or "
            "`dealreg followers skip '%s' --position %d --reason ...`",
            self.name,
            self.source.log,
            failed.position,
            failed.topic,
            times,
            failed.error,
            self.name,
            self.name,
            failed.position,
            exc_info=failed.__cause__,
            extra={
                "follower": self.name,
                "log": self.source.log,
                "position": failed.position,
                "topic": failed.topic,
                "error": failed.error,
            },
        )
        try:
            while not self._stopping.wait(self.decision_poll_seconds):
                decided = self.stuck_events.get(self.name, failed.position)
                if decided.decision == "skip":
                    log.warning(
                        "follower %s skips %s position %d, as %s decided: %s",
                        self.name,
                        self.source.log,
                        failed.position,
                        decided.decided_by,
                        decided.reason,
                    )
                    self._move_past(failed.position)
                    return
                if decided.decision == "retry" or decided.passed_at is not None:
                    log.warning("follower %s retries position %d", self.name, failed.position)
                    self._failing = None
                    return
        finally:
            self.stuck = None

    def _follow(self) -> None:
        # A stuck event recorded while another replica led (or before a restart) is marked
        # passed once this one applies it.
        unresolved = self.stuck_events.unresolved([self.name])
        self._unresolved = max((s.position for s in unresolved), default=None)
        if self._unresolved is not None and self.position() >= self._unresolved:
            self.stuck_events.passed(self.name, self.position())
            self._unresolved = None
        self._skipped = self.stuck_events.skipped(self.name)
        channel = self.source.recorder.channel_name
        self._wake = wake = self.listener.subscribe(channel)
        try:
            while not self._stopping.is_set():
                wake.clear()  # before reading: a notification from now on wakes the next wait
                self._catch_up(stopping=self._stopping)
                self.last_error = None
                wake.wait(self.poll_seconds)
        finally:
            self.listener.unsubscribe(channel, wake)
            self._wake = None


class DecidingTarget:
    """A process application as a follower's target: it records its own decisions (events in
    its own log) together with the tracking position, through the library's process recorder."""

    attempts = 5

    def __init__(self, app: Any) -> None:
        self.app = app
        self.name: str = app.name

    def _tracked(self, tracking: Tracking) -> bool:
        return (self.max_tracking_id(tracking.application_name) or 0) >= tracking.notification_id

    def max_tracking_id(self, application_name: str) -> int | None:
        result: int | None = self.app.recorder.max_tracking_id(application_name)
        return result

    def insert_tracking(self, tracking: Tracking) -> None:
        self.app.recorder.insert_tracking(tracking)

    def process(self, event: Any, tracking: Tracking) -> None:
        cause = caused_by_event(
            self.name,
            tracking.application_name,
            tracking.notification_id,
            getattr(event, "correlation_id", None),
        )
        with caused_by(cause):
            self._decide(event, tracking)

    def _decide(self, event: Any, tracking: Tracking) -> None:
        # Another writer (the clock, a command, another follower) may have saved one of the
        # aggregates this decision changes: decide again on what it recorded.
        for attempt in range(self.attempts):
            try:
                self.app.process_event(event, tracking)
                return
            except IntegrityError:
                if attempt == self.attempts - 1 or self._tracked(tracking):
                    raise
