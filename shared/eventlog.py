"""Each service's append-only log: an `eventsourcing` Application over PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.domain import DomainEventProtocol, OriginatorVersionError
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import Environment, get_topic
from psycopg.sql import SQL, Identifier

from shared.audit.causes import AUDIT_KEY, current_cause
from shared.audit.chain import ChainedApplicationRecorder, ChainedProcessRecorder
from shared.clock import Clock
from shared.codec import register_transcodings
from shared.database import Database, PooledFactory

TAggregate = TypeVar("TAggregate")
T = TypeVar("T")


class AuditedMapper(Mapper[UUID]):
    """Stores each event with its cause (who, why: ``shared.audit.causes``) beside its fields,
    and hands the domain its event without it."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        return super().to_stored_event(_with_cause(domain_event))

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        domain_event = super().to_domain_event(stored_event)
        domain_event.__dict__.pop(AUDIT_KEY, None)
        return domain_event


def _with_cause(domain_event: DomainEventProtocol[UUID]) -> DomainEventProtocol[UUID]:
    # A copy: the aggregate's own event object stays as the domain made it.
    copy = object.__new__(type(domain_event))
    object.__setattr__(
        copy, "__dict__", {**vars(domain_event), AUDIT_KEY: current_cause().as_dict()}
    )
    return copy


class RequestWrites:
    """The events one write request decided, recorded once its answer is known.

    The HTTP edge (``shared.idempotency``) puts one in force for each write request; the
    application's ``save`` then collects instead of recording, and the edge records everything
    in one transaction with the stored answer, or nothing if the request fails. A crash at any
    point leaves either both or neither. Reads of the application during the request see what
    it collected (an import's later rows see its earlier ones)."""

    def __init__(self, app: ServiceApplication) -> None:
        self.app = app
        self.collected: ProcessingEvent[UUID] = ProcessingEvent()
        self._by_aggregate: dict[UUID, list[Any]] = {}
        self.unchanged: dict[UUID, int] = {}

    def collect(self, *objs: Any, unchanged: Mapping[UUID, int] | None = None) -> None:
        before = len(self.collected.events)
        self.collected.collect_events(*objs)
        for event in self.collected.events[before:]:
            self._by_aggregate.setdefault(event.originator_id, []).append(event)
        for aggregate_id, version in (unchanged or {}).items():
            if not self.of(aggregate_id):  # as recorded, not as this request changed it
                self.unchanged.setdefault(aggregate_id, version)

    def of(self, aggregate_id: UUID) -> list[Any]:
        return self._by_aggregate.get(aggregate_id, [])

    def overlaid(self, aggregate_id: UUID, recorded: Any) -> Any:
        """An aggregate as recorded, with this request's events applied."""
        aggregate = recorded
        try:
            for event in self.of(aggregate_id):
                aggregate = event.mutate(aggregate)
        except OriginatorVersionError as error:
            # Another writer recorded a version this request also decided: decide again.
            raise IntegrityError(str(error)) from error
        return aggregate

    @property
    def empty(self) -> bool:
        return not self.collected.events


_request_writes: ContextVar[RequestWrites | None] = ContextVar(
    "dealreg_request_writes", default=None
)


@contextmanager
def collecting(writes: RequestWrites) -> Iterator[RequestWrites]:
    token = _request_writes.set(writes)
    try:
        yield writes
    finally:
        _request_writes.reset(token)


def _writes_of(app: ServiceApplication) -> RequestWrites | None:
    writes = _request_writes.get()
    return writes if writes is not None and writes.app is app else None


class _RequestAwareRepository(Repository[UUID]):
    """Reads the latest version with the request's collected events applied."""

    app: ServiceApplication

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        writes = _writes_of(self.app)
        if writes is None or version is not None or not writes.of(aggregate_id):
            return super().get(aggregate_id, version=version, **kwargs)
        try:
            recorded = super().get(aggregate_id, **kwargs)
        except AggregateNotFoundError:
            recorded = None
        return writes.overlaid(aggregate_id, recorded)


InTransaction = Callable[[Any], None]
"""Work done with a cursor in the transaction that records a request's events."""


class ServiceApplication(Application[UUID]):
    """A service's log: table ``<name>_events``, written by this service alone."""

    # The clock's stream grows with every run of time; a snapshot keeps loading it cheap.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Clock: 50}

    def __init__(self, database: Database) -> None:
        self.database = database
        env = {
            "MAPPER_TOPIC": get_topic(AuditedMapper),
            "APPLICATION_RECORDER_TOPIC": get_topic(ChainedApplicationRecorder),
            "PROCESS_RECORDER_TOPIC": get_topic(ChainedProcessRecorder),
        }
        with database.creating_tables():
            super().__init__(env)

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        return PooledFactory(env, self.database)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        register_transcodings(transcoder)

    def construct_repository(self) -> Repository[UUID]:
        repository = _RequestAwareRepository(event_store=self.events, snapshot_store=self.snapshots)
        repository.app = self
        return repository

    def save(self, *objs: Any, unchanged: Mapping[UUID, int] | None = None, **kwargs: Any) -> Any:
        """Records the aggregates' new events; with ``unchanged`` (aggregate id: the version
        read, 0 for none), only if those aggregates are still at those versions, else it fails
        with ``IntegrityError`` as a racing write of the same version would: a decision that
        rests on what another writer may change is decided again."""
        writes = _writes_of(self)
        if writes is None or kwargs:
            if unchanged:
                kwargs["unchanged"] = unchanged
            return super().save(*objs, **kwargs)
        writes.collect(*objs, unchanged=unchanged)
        return []

    def record_request(
        self, writes: RequestWrites, in_transaction: InTransaction | None = None
    ) -> None:
        """What a request collected, recorded in one transaction with ``in_transaction``."""
        collected = writes.collected
        if writes.empty:
            if in_transaction is not None:
                recorder = self.recorder
                assert isinstance(recorder, PostgresApplicationRecorder)
                with recorder.datastore.transaction(commit=True) as curs:
                    in_transaction(curs)
            return
        if in_transaction is not None:
            collected.saved_kwargs["in_transaction"] = in_transaction
        if writes.unchanged:
            collected.saved_kwargs["unchanged"] = writes.unchanged
        recordings = self._record(collected)
        self._take_snapshots(collected)
        self._notify(recordings)

    def retrying(self, attempt: Callable[[], T], attempts: int = 5) -> T:
        """A command that loads, decides and saves: a concurrent writer of the same aggregate
        makes the save fail on its version, so load again and decide on what it recorded."""
        for _ in range(attempts - 1):
            try:
                return attempt()
            except IntegrityError:
                continue
        return attempt()

    def get(self, aggregate_id: UUID, kind: type[TAggregate]) -> TAggregate:
        """An aggregate of a given kind; any other kind under that id is not found."""
        aggregate: object = self.repository.get(aggregate_id)
        if not isinstance(aggregate, kind):
            raise AggregateNotFoundError(aggregate_id)
        return aggregate

    def get_as_of(
        self, aggregate_id: UUID, kind: type[TAggregate], instant: datetime
    ) -> TAggregate:
        """An aggregate as recorded at an instant: its events recorded by then, no later one
        (not found if it had none yet)."""
        version = None
        for domain_event in self.events.get(aggregate_id):
            if domain_event.timestamp > instant:  # type: ignore[attr-defined]
                break
            version = domain_event.originator_version
        if version is None:
            raise AggregateNotFoundError(aggregate_id)
        aggregate: object = self.repository.get(aggregate_id, version=version)
        if not isinstance(aggregate, kind):
            raise AggregateNotFoundError(aggregate_id)
        return aggregate

    def get_many(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, Any]:
        """Several aggregates in one query (for batches); absent ids are left out."""
        wanted = list(set(aggregate_ids))
        if not wanted:
            return {}
        recorder = self.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}.{}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, (wanted,))
            rows = curs.fetchall()
        aggregates: dict[UUID, Any] = {}
        writes = _writes_of(self)
        for row in rows:
            domain_event: Any = self.mapper.to_domain_event(
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
            )
            aggregates[row["originator_id"]] = domain_event.mutate(
                aggregates.get(row["originator_id"])
            )
        if writes is not None:
            for aggregate_id in wanted:
                if writes.of(aggregate_id):
                    aggregates[aggregate_id] = writes.overlaid(
                        aggregate_id, aggregates.get(aggregate_id)
                    )
        return aggregates

    def decode(self, notification: Any) -> Any:
        """A notification of this log as the domain event it stores."""
        return self.mapper.to_domain_event(notification)


def log_table(log: str) -> str:
    return f"{log}_events"


def open_log(database: Database, log: str) -> PostgresApplicationRecorder:
    """A reader of another service's log, by name alone: no class of that service is imported.

    It may create the (empty) table, so that a consumer can start before its producer.
    """
    factory = PooledFactory(Environment(log), database)
    with database.creating_tables():
        recorder = factory.application_recorder()
    assert isinstance(recorder, PostgresApplicationRecorder)
    return recorder
