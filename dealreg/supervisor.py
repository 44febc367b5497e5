"""`dealreg run`: the three services as child processes on one PostgreSQL, for development."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from dealreg.catalogue import SERVICES
from shared.auth import Role, development_subject, mint_token
from shared.database import embedded_url, start_embedded
from shared.settings import ServiceSettings


def ensure_dev_secret(settings: ServiceSettings) -> str:
    """The configured secret, else a development one kept in the data directory."""
    existing = settings.resolved_jwt_secret()
    if existing:
        return existing
    path = settings.dev_secret_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with code {process.returncode} while starting")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer /healthz within {timeout:.0f}s")


def _reachable(host: str) -> str:
    """The address (in a URL) a child reaches a sibling at: loopback when they listen on every
    interface."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def run_all(host: str, settings: ServiceSettings, *, port_offset: int = 0) -> int:
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    server: Any = None
    if settings.database_url:
        database_url = settings.database_url
        where = "PostgreSQL at DATABASE_URL"
    else:
        server = start_embedded(settings.data_dir)
        database_url = embedded_url(server)
        where = f"embedded PostgreSQL in {settings.data_dir / 'pgdata'}"
    secret = ensure_dev_secret(settings)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEALREG_DATA_DIR": str(settings.data_dir),
        # Readable lines in a terminal; deployments keep the JSON default.
        "DEALREG_LOG_JSON": os.environ.get("DEALREG_LOG_JSON", "false"),
        # Tiering asks commissions for a what-if's statements, where this starts it.
        "DEALREG_COMMISSIONS_URL": f"http://{_reachable(host)}:"
        f"{SERVICES['commissions'].port + port_offset}",
    }
    if not (settings.jwt_public_key or settings.jwks_url):
        env["DEALREG_JWT_SECRET"] = secret
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for entry in SERVICES.values():
            children[entry.name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dealreg.cli",
                    "serve",
                    entry.name,
                    "--host",
                    host,
                    "--port",
                    str(entry.port + port_offset),
                ],
                env=env,
            )
        for entry in SERVICES.values():
            _wait_healthy(f"http://{host}:{entry.port + port_offset}", children[entry.name], 60)
        token = mint_token(
            secret,
            Role.ADMIN,
            subject=development_subject(Role.ADMIN),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
        print(f"\ndealreg is running on the {where}:", flush=True)
        for entry in SERVICES.values():
            print(f"  {entry.name:<13} http://{host}:{entry.port + port_offset}  (docs: /docs)")
        print(f"\nDevelopment admin token (8 hours):\n  {token}\n")
        print(
            f'Try:  curl -H "Authorization: Bearer <token>" '
            f"http://{host}:{8001 + port_offset}/v1/events"
        )
        print("Stop with Ctrl-C.\n", flush=True)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with code {child.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        if server is not None:
            server.cleanup()
            print(
                f"embedded PostgreSQL stopped; data kept in {Path(settings.data_dir) / 'pgdata'}",
                flush=True,
            )
