"""Time as an input: a clock per service turns the passing of time into events.

The clock records how far it has run (``Clock.Advanced``) in the same transaction as the
decisions it took, so running it twice to the same instant decides nothing twice, and a replay
of the log never needs the wall clock. The wall clock is read here, by the worker, and nowhere
in the domain.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from shared.audit.causes import cause_in_force, caused_by, caused_by_time
from shared.program_dates import OutsideProgramError, in_program
from shared.subscriptions import Follower, Leadership

if TYPE_CHECKING:
    from shared.eventlog import ServiceApplication

log = logging.getLogger(__name__)

_CLOCK_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dealreg:clock")


def utc_now() -> datetime:
    return datetime.now(UTC)


class ClockWentBackwardsError(ValueError):
    pass


class Clock(Aggregate):
    """How far a service has run time."""

    @staticmethod
    def create_id(service: str) -> UUID:
        return uuid5(_CLOCK_NAMESPACE, service)

    @event("Started")
    def __init__(self, service: str) -> None:
        self.service = service
        self.now: datetime | None = None

    def advance(self, until: datetime, decisions: int) -> None:
        if self.now is not None and until <= self.now:
            raise ClockWentBackwardsError(f"the clock already stands at {self.now.isoformat()}")
        self.advanced(until=until, decisions=decisions)

    @event("Advanced")
    def advanced(self, until: datetime, decisions: int) -> None:
        self.now = until


class ClockJob(Protocol):
    """Decides what the passing of time from ``since`` to ``until`` means.

    Returns the aggregates it changed (not saved yet). It must be idempotent: aggregates guard
    against taking the same decision twice.
    """

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]: ...


@dataclass(frozen=True)
class ClockRun:
    service: str
    previous: datetime | None
    now: datetime
    decisions: int


class ServiceClock:
    def __init__(
        self,
        app: ServiceApplication,
        service: str,
        jobs: Sequence[ClockJob],
        *,
        needs: Sequence[Follower] = (),
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.app = app
        self.service = service
        self.jobs = jobs
        self.needs = needs
        self.now = now
        self._lock = threading.Lock()

    def time(self) -> datetime:
        """The service's present: the wall clock, or where the clock was run to if later.

        Time in a service never runs backwards: after a backfill or a test runs the clock
        ahead, what happens next happens then."""
        wall = self.now()
        position = self.current()
        return max(wall, position) if position else wall

    def time_at(self, instant: datetime) -> datetime:
        """The service's present as it stood at an instant of the wall clock."""
        try:
            clock = self.app.get_as_of(Clock.create_id(self.service), Clock, instant)
        except AggregateNotFoundError:
            return instant
        return max(instant, clock.now) if clock.now else instant

    def current(self) -> datetime | None:
        try:
            clock: Clock = self.app.repository.get(Clock.create_id(self.service))
        except AggregateNotFoundError:
            return None
        return clock.now

    def advance(self, until: datetime, *, record_idle: bool = True) -> ClockRun:
        """Run time up to an instant; an instant already reached changes nothing.

        The worker's routine ticks that decide nothing are not recorded (``record_idle``), so
        the log does not grow by a tick a minute."""
        if until.tzinfo is None:
            raise ValueError("the instant needs a time zone")
        if not in_program(until):
            raise OutsideProgramError(until, field="until")
        with self._lock:
            for follower in self.needs:
                follower.sync()
            # Run by hand (an admin's request, the CLI), the clock's decisions are theirs.
            cause = cause_in_force() or caused_by_time(self.service, until.isoformat())
            for attempt in range(3):
                try:
                    with caused_by(cause):
                        return self._advance_once(until, record_idle)
                except IntegrityError:  # another process advanced the clock at the same time
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def _advance_once(self, until: datetime, record_idle: bool) -> ClockRun:
        try:
            clock: Clock = self.app.repository.get(Clock.create_id(self.service))
        except AggregateNotFoundError:
            clock = Clock(self.service)
        previous = clock.now
        if previous is not None and until <= previous:
            return ClockRun(self.service, previous, previous, 0)
        changed: list[Any] = [agg for job in self.jobs for agg in job(previous, until)]
        decisions = sum(len(agg.pending_events) for agg in changed)
        if not decisions and not record_idle:
            return ClockRun(self.service, previous, previous or until, 0)
        clock.advance(until, decisions)
        self.app.save(*changed, clock)
        return ClockRun(self.service, previous, until, decisions)


class ClockWorker:
    """Advances a service's clock to the wall clock at an interval, on the leading replica."""

    def __init__(self, clock: ServiceClock, database_url: str, interval: float) -> None:
        self.clock = clock
        self.interval = interval
        self.leadership = Leadership(database_url, f"clock:{clock.service}")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"clock:{self.clock.service}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self.leadership.hold(self._stopping) as leading:
                    while leading and not self._stopping.is_set():
                        self.clock.advance(self.clock.now(), record_idle=False)
                        self._stopping.wait(self.interval)
            except Exception:  # keep ticking after a lost connection
                log.exception("clock %s failed", self.clock.service)
                self._stopping.wait(self.interval)
