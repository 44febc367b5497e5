"""Projections: tables derived from logs, each written with its tracking position.

A view's rows and the position of the event that produced them are committed in one
transaction, so every event takes effect exactly once, and a view can be dropped and rebuilt
from the logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, Self, TypeVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.utils import Environment, get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from shared.database import Database, PooledFactory


class Statements(Protocol):
    """What a handler writes with: its statements are sent when the batch of events ends."""

    def execute(self, query: Composed, params: Sequence[Any] | None = None) -> None: ...


Handler = Callable[[Any, Statements, Any], None]
F = TypeVar("F", bound=Callable[..., None])


def on(*event_types: type) -> Callable[[F], F]:
    """Mark a view method as the handler of some event types."""

    def mark(method: F) -> F:
        method.__dict__["_handles"] = event_types
        return method

    return mark


class _Batch:
    """The statements of a batch of events, in order. Sent together, a run of the same
    statement as one ``executemany``: a statement sent on its own waits for the database once
    per event, which set the pace of a rebuild."""

    def __init__(self) -> None:
        self.runs: list[tuple[Composed, list[Sequence[Any] | None]]] = []

    def execute(self, query: Composed, params: Sequence[Any] | None = None) -> None:
        if self.runs and self.runs[-1][0] is query:
            self.runs[-1][1].append(params)
        else:
            self.runs.append((query, [params]))

    def send(self, curs: Cursor[DictRow]) -> None:
        for query, rows in self.runs:
            if len(rows) == 1:
                curs.execute(query, rows[0])
            else:
                curs.executemany(query, rows)  # type: ignore[arg-type]


class View(PostgresTrackingRecorder):
    """Base of every projection. Subclasses name their tables and give their DDL.

    ``create_sql`` statements use ``{schema}`` for the view's schema. ``index_sql`` holds what
    only serves reads or keeps derived counts (secondary indexes, triggers): a rebuild creates
    it once the view has taken every event, which costs less than keeping it row by row.
    """

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]] = ()
    create_sql: ClassVar[tuple[str, ...]] = ()
    index_sql: ClassVar[tuple[str, ...]] = ()
    _handlers: ClassVar[dict[type, Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type, Handler] = {}
        for base in reversed(cls.__mro__):
            for attribute in vars(base).values():
                for event_type in getattr(attribute, "_handles", ()):
                    handlers[event_type] = attribute
        cls._handlers = handlers

    @classmethod
    def topics(cls) -> tuple[str, ...]:
        """The stored topics of the events this view handles."""
        return tuple(sorted(get_topic(event_type) for event_type in cls._handlers))

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._statements: dict[str, Composed] = {}
        schema = Identifier(self.datastore.schema)
        for statement in (*self.create_sql, *self.index_sql):
            self.sql_create_statements.append(SQL(statement).format(schema=schema))

    @classmethod
    def open(cls, database: Database) -> Self:
        """The view over the database's pool, in its schema (tables created if need be)."""
        factory = PooledFactory(Environment(cls.name), database)
        with database.creating_tables():
            return factory.tracking_recorder(cls)

    @property
    def schema(self) -> str:
        return self.datastore.schema

    def qualified(self, table: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.schema), Identifier(table))

    def statement(self, template: str) -> Composed:
        """A statement with ``{schema}`` filled in (cached: handlers run once per event)."""
        cached = self._statements.get(template)
        if cached is None:
            cached = SQL(template).format(schema=Identifier(self.schema))
            self._statements[template] = cached
        return cached

    def process(self, event: Any, tracking: Tracking) -> None:
        self.process_many([(event, tracking)])

    def process_many(self, events: Sequence[tuple[Any, Tracking]]) -> None:
        """Events in order, in one transaction with the last one's position: catching up and
        rebuilding go at the pace of the database rather than of its round trips."""
        if not events:
            return
        statements = _Batch()
        for event, _ in events:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(self, statements, event)
        with self.datastore.transaction(commit=True) as curs:
            statements.send(curs)
            self._insert_tracking(curs, events[-1][1])

    def all_tables(self) -> tuple[str, ...]:
        return (*self.tables, self.tracking_table_name)

    def drop(self) -> None:
        """Drop the view's tables and its tracking, and create them again without what
        ``index_sql`` adds: ready for a rebuild, which ends with ``create_indexes``."""
        with self.datastore.transaction(commit=True) as curs:
            for table in self.all_tables():
                curs.execute(SQL("DROP TABLE IF EXISTS {}").format(self.qualified(table)))
        self.tracking_table_exists = False
        self.tracking_migration_previous = None
        indexes = len(self.index_sql)
        statements = self.sql_create_statements
        self.sql_create_statements = statements[: len(statements) - indexes]
        try:
            self.create_table()
        finally:
            self.sql_create_statements = statements

    def create_indexes(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for statement in self.index_sql:
                curs.execute(SQL(statement).format(schema=Identifier(self.schema)))
