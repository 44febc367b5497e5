"""The three services as real processes (uvicorn, via `dealreg serve`) on free ports."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import JWT_SECRET, STUCK_SECONDS

SERVICES = ("registration", "commissions", "tiering")


LISTEN_PORTS = range(20000, 32000)
"""Where the services under test listen: below Linux's ephemeral range (32768 on), from which
every outgoing connection (to PostgreSQL, between services) takes a port, and where a port
found free a moment ago was seen taken by the time a service bound it."""


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive ports that are free now."""
    while True:
        first = random.randrange(LISTEN_PORTS.start, LISTEN_PORTS.stop - count)
        if all(bindable(first + n) for n in range(count)):
            return first


def free_port() -> int:
    return free_ports(1)


@dataclass
class Stack:
    database_url: str
    log_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def client(self, service: str) -> httpx.Client:
        """A client that waits for an answer as long as a stuck test would (a busy machine
        answers late, not wrongly)."""
        return httpx.Client(base_url=self.url(service), timeout=STUCK_SECONDS)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "DEALREG_JWT_SECRET": JWT_SECRET,
            "DEALREG_CLOCK_INTERVAL_SECONDS": "0",
            "DEALREG_LOG_JSON": "false",
            "DEALREG_LOG_LEVEL": "WARNING",
            # webhooks to a receiver on this machine, retried at once; an attempt is given
            # long enough that a busy machine's late answer is not taken for a failure (a
            # lease on a delivery lasts twice that, and a restart waits for it to lapse)
            "DEALREG_WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            "DEALREG_WEBHOOK_RETRY_SCHEDULE_SECONDS": "[0, 0.2, 0.2, 0.2, 0.2, 0.2]",
            "DEALREG_WEBHOOK_POLL_SECONDS": "0.05",
            "DEALREG_WEBHOOK_TIMEOUT_SECONDS": "10",
            **self.extra_env,
        }

    def start(self, service: str) -> None:
        self.ports.setdefault(service, free_port())
        log = (self.log_dir / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dealreg.cli",
                "serve",
                service,
                "--port",
                str(self.ports[service]),
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, service: str, timeout: float = STUCK_SECONDS) -> None:
        """Until the service says it is ready (its followers caught up), or its process ends;
        ``timeout`` is only the bound past which it is stuck."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[service]
            if process.poll() is not None:
                log = (self.log_dir / f"{service}.log").read_text()[-3000:]
                raise AssertionError(f"{service} exited ({process.returncode}):\n{log}")
            try:
                if httpx.get(f"{self.url(service)}/readyz", timeout=timeout).status_code == 200:
                    return
            except httpx.TransportError:  # not listening yet
                pass
            time.sleep(0.1)
        raise AssertionError(f"{service} not ready within {timeout}s")

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(service)
        process.send_signal(sig)
        process.wait(timeout=STUCK_SECONDS)

    def stop_all(self) -> None:
        for service in list(self.processes):
            process = self.processes.pop(service)
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def running_stack(
    database_url: str, log_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """The three services as processes on this database, ready, until the block ends."""
    stack = Stack(database_url, log_dir, extra_env=dict(extra_env or {}))
    try:
        for service in SERVICES:
            stack.start(service)
        for service in SERVICES:
            stack.wait_ready(service)
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(database_url, tmp_path) as running:
        yield running
