"""An event a follower cannot apply, written straight into a log (past the API): what an
operator sees in /readyz, /metrics and `dealreg followers`, and how they resolve it
(decision 17)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dealreg.cli import cli
from services.tiering import service as tiering
from shared.runtime import ServiceRuntime
from shared.subscriptions import Follower, FollowerStuckError
from tests.conftest import STUCK_SECONDS, eventually

MEMBERS = "tiering_members<-tiering"


@pytest.fixture(autouse=True)
def operators_are_heard_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Follower, "decision_poll_seconds", 0.05)


@contextmanager
def tiering_service(settings_for: Callable[..., Any]) -> Iterator[TestClient]:
    with TestClient(tiering.create_app(settings_for())) as client:
        yield client


def runtime_of(client: TestClient) -> ServiceRuntime:
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def members(client: TestClient) -> Follower:
    return next(f for f in runtime_of(client).followers if f.name == MEMBERS)


def enrol(client: TestClient, legal_name: str) -> None:
    """Straight into the log, through the application: no API validation on the way."""
    app: Any = runtime_of(client).app
    app.enrol_partner(
        legal_name=legal_name,
        home_country="DE",
        regions=["EMEA"],
        motions=["sell"],
        function="sales",
        category="solution_reseller",
        management="formal_program",
        on=date(2026, 1, 1),
    )


def dealreg(database_url: str, *args: str) -> tuple[int, Any]:
    """The operator's command, against the database its settings name."""
    result = CliRunner().invoke(cli, list(args), env={"DATABASE_URL": database_url})
    output = result.stdout.strip()
    return result.exit_code, json.loads(output) if output.startswith("[") else result.output


def stuck_reason(client: TestClient) -> dict[str, Any] | None:
    ready = client.get("/readyz")
    if ready.status_code != 503 or ready.json()["type"] != "/problems/follower-stuck":
        return None
    body: dict[str, Any] = ready.json()
    return body


def ready(client: TestClient) -> bool:
    return client.get("/readyz").status_code == 200


def metric(client: TestClient, name: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'{name}{{service="tiering",subscription="{MEMBERS}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def legal_names(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT legal_name FROM tiering_partners")}


def caught_up(follower: Follower) -> bool:
    return follower.pending() == 0


def test_a_nul_byte_is_seen_everywhere_and_skipped_with_a_reason(
    settings_for: Callable[..., Any], database_url: str
) -> None:
    with tiering_service(settings_for) as client:
        eventually(lambda: ready(client))
        enrol(client, "North\x00wind")

        problem = eventually(lambda: stuck_reason(client))
        (stuck,) = problem["stuck"]
        assert stuck["follower"] == MEMBERS
        assert stuck["log"] == "tiering"
        assert "Enrolled" in stuck["topic"]
        assert "cannot contain NUL" in stuck["error"]
        assert f"{MEMBERS} is stuck at tiering position {stuck['position']}" in problem["detail"]
        assert metric(client, "dealreg_follower_stuck") == 1
        assert (metric(client, "dealreg_follower_failures_total") or 0) >= 3
        follower = members(client)
        assert follower.position() < stuck["position"]  # halted there, not past it
        eventually(lambda: follower.stuck)
        with pytest.raises(FollowerStuckError, match="stuck at tiering position"):
            follower.sync(timeout=STUCK_SECONDS)  # what waits for the projection is told at once

    # After a restart it still says where it is stuck and why, not "catching up" forever.
    with tiering_service(settings_for) as client:
        problem = eventually(lambda: stuck_reason(client))
        assert problem["stuck"][0]["position"] == stuck["position"]
        enrol(client, "Southwind")  # waits behind the stuck event

        code, listed = dealreg(database_url, "followers", "list")
        assert code == 1  # someone must act
        assert [(e["follower"], e["position"], e["status"]) for e in listed] == [
            (MEMBERS, stuck["position"], "stuck")
        ]
        elsewhere = str(stuck["position"] + 1)
        code, _ = dealreg(
            database_url, "followers", "skip", MEMBERS, "--position", elsewhere, "--reason", "typo"
        )
        assert code == 2  # not where it is stuck: nothing decided

        code, decided = dealreg(
            database_url,
            *("followers", "skip", MEMBERS, "--position", str(stuck["position"])),
            *("--reason", "test data with a NUL byte, entered past the API", "--by", "ops"),
        )
        assert code == 0, decided
        follower = members(client)
        eventually(lambda: caught_up(follower) and "Southwind" in legal_names(database_url))
        eventually(lambda: ready(client))
        assert metric(client, "dealreg_follower_stuck") == 0

        code, record = dealreg(database_url, "followers", "list", "--all")
        assert code == 0
        (skipped,) = record
        assert skipped["status"] == "skipped"
        assert skipped["decided_by"] == "ops"
        assert skipped["reason"] == "test data with a NUL byte, entered past the API"

        # A replay leaves the skipped event out too: rebuilt and live projections agree.
        report = runtime_of(client).rebuild(into_schema="replayed")
        assert report.identical, [d for d in report.differences if d.only_live or d.only_rebuilt]


def test_an_event_that_failed_is_retried_once_its_cause_is_fixed(
    settings_for: Callable[..., Any], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tiering_service(settings_for) as client:
        eventually(lambda: ready(client))
        view: Any = members(client).target
        released = view.process_many

        def with_a_bug(events: list[tuple[Any, Any]]) -> None:
            if any(getattr(event, "legal_name", None) == "Overflow GmbH" for event, _ in events):
                raise OverflowError("date value out of range")
            released(events)

        monkeypatch.setattr(view, "process_many", with_a_bug)
        enrol(client, "Overflow GmbH")
        problem = eventually(lambda: stuck_reason(client))
        assert "OverflowError: date value out of range" in problem["stuck"][0]["error"]

        monkeypatch.setattr(view, "process_many", released)  # the fixed release
        code, decided = dealreg(database_url, "followers", "retry", MEMBERS)
        assert code == 0, decided
        assert decided[0]["status"] == "retrying"
        follower = members(client)
        eventually(lambda: caught_up(follower) and "Overflow GmbH" in legal_names(database_url))
        eventually(lambda: ready(client))

        code, record = dealreg(database_url, "followers", "list", "--all")
        assert [e["status"] for e in record] == ["applied"]
