"""`dealreg run` (what `make run` calls): embedded PostgreSQL, three services, an admin token;
Ctrl-C stops everything, and a second run finds the data still there."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import STUCK_SECONDS
from tests.e2e.conftest import free_ports

NAMES = {"registration": 8001, "commissions": 8002, "tiering": 8003}


def start(data_dir: Path, offset: int, log: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEALREG_", "DATABASE_URL"))}
    env["DEALREG_DATA_DIR"] = str(data_dir)
    return subprocess.Popen(
        [sys.executable, "-m", "dealreg.cli", "run", "--port-offset", str(offset)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_token(
    log: Path, process: subprocess.Popen[str], timeout: float = STUCK_SECONDS
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"admin token.*\n\s+(\S+\.\S+\.\S+)", log.read_text())
        if match:
            return match.group(1)
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(log.read_text())


def interrupt(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:  # (one that ended already has said why in its log)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    assert process.wait(timeout=STUCK_SECONDS) == 0


def postgres_running(data_dir: Path) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(data_dir) in " ".join(
            proc.info["cmdline"] or []
        ):
            return True
    return False


def test_run_prints_urls_and_a_token_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    offset = free_ports(3) - 8001  # the three services' ports, one after the other
    first_log = tmp_path / "first.log"
    process = start(data_dir, offset, first_log)
    try:
        token = wait_for_token(first_log, process)
        output = first_log.read_text()
        for name, port in NAMES.items():
            url = f"http://127.0.0.1:{port + offset}"
            assert url in output
            assert httpx.get(f"{url}/healthz", timeout=STUCK_SECONDS).json()["service"] == name
        headers = {"Authorization": f"Bearer {token}"}
        events = httpx.get(
            f"http://127.0.0.1:{8003 + offset}/v1/events", headers=headers, timeout=STUCK_SECONDS
        )
        assert events.status_code == 200
        enrolled = httpx.post(
            f"http://127.0.0.1:{8003 + offset}/v1/partners",
            json={
                "legal_name": "Kept",
                "home_country": "FR",
                "regions": ["EMEA"],
                "function": "sales",
                "category": "sales_agent",
            },
            headers=headers,
            timeout=STUCK_SECONDS,
        )
        assert enrolled.status_code == 201
    finally:
        interrupt(process)
    assert not postgres_running(data_dir)

    second_log = tmp_path / "second.log"
    again = start(data_dir, offset, second_log)
    try:
        token = wait_for_token(second_log, again)
        partners = httpx.get(
            f"http://127.0.0.1:{8003 + offset}/v1/partners",
            headers={"Authorization": f"Bearer {token}"},
            timeout=STUCK_SECONDS,
        ).json()["partners"]
        assert [p["legal_name"] for p in partners] == ["Kept"]
    finally:
        interrupt(again)
    assert not postgres_running(data_dir)
