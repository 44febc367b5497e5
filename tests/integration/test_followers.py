"""Following a log: exactly once, resumable, one active worker at a time, rebuildable."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from services.tiering import service as tiering
from services.tiering.projections import MembersView
from shared.runtime import ServiceRuntime, WorkerIsRunningError, own_log
from shared.subscriptions import Follower, Source
from tests.conftest import eventually


def enrol(runtime: ServiceRuntime, name: str) -> Any:
    app: Any = runtime.app
    return app.enrol_partner(
        legal_name=name,
        home_country="DE",
        regions=["EMEA"],
        motions=["sell"],
        function="sales",
        category="solution_reseller",
        management="formal_program",
        on=date(2026, 1, 1),
    )


def count(runtime: ServiceRuntime, table: str) -> int:
    with psycopg.connect(runtime.database_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        assert row is not None
        return int(row[0])


@pytest.fixture
def runtime(settings_for: Callable[..., Any]) -> Any:
    runtime = tiering.build_runtime(settings_for())
    yield runtime
    runtime.close()


def members(runtime: ServiceRuntime) -> Follower:
    return next(f for f in runtime.followers if isinstance(f.target, MembersView))


def test_an_event_takes_effect_once_even_if_offered_twice(runtime: ServiceRuntime) -> None:
    enrol(runtime, "Once")
    follower = members(runtime)
    assert follower.catch_up() == 3
    notification = runtime.app.recorder.select_notifications(start=1, limit=1)[0]
    with pytest.raises(IntegrityError):
        follower.target.process(
            runtime.app.decode(notification), Tracking("tiering", notification.id)
        )
    assert count(runtime, "tiering_partners") == 1
    assert follower.catch_up() == 0


def test_a_restarted_follower_resumes_where_it_stopped(runtime: ServiceRuntime) -> None:
    follower = members(runtime)
    enrol(runtime, "Before")
    follower.start()
    eventually(lambda: count(runtime, "tiering_partners") == 1)
    follower.stop()
    enrol(runtime, "While stopped")
    enrol(runtime, "While stopped too")
    assert count(runtime, "tiering_partners") == 1
    follower.start()
    eventually(lambda: count(runtime, "tiering_partners") == 3)
    enrol(runtime, "After")  # and it listens for new events again
    eventually(lambda: count(runtime, "tiering_partners") == 4)
    eventually(lambda: follower.position() == runtime.app.recorder.max_notification_id())
    follower.stop()
    assert follower.pending() == 0


def test_only_one_worker_runs_a_projection(
    runtime: ServiceRuntime, settings_for: Callable[..., Any]
) -> None:
    standby_runtime = tiering.build_runtime(settings_for())
    try:
        active, standby = members(runtime), members(standby_runtime)
        active.start()
        eventually(lambda: active._leading)
        standby.start()
        enrol(runtime, "Seen by one")
        eventually(lambda: count(runtime, "tiering_partners") == 1)
        assert not standby._leading
        assert standby.ready  # a standby serves reads: it is ready
        active.stop()
        eventually(lambda: standby._leading)  # it takes over when the lock is released
        enrol(runtime, "Seen by the other")
        eventually(lambda: count(runtime, "tiering_partners") == 2)
    finally:
        standby_runtime.close()


def test_rebuild_beside_the_live_projection_is_identical(runtime: ServiceRuntime) -> None:
    for n in range(5):
        enrol(runtime, f"Partner {n}")
    runtime.sync()
    report = runtime.rebuild(into_schema="rebuild_check")
    assert report.identical, [d for d in report.differences if d.only_live or d.only_rebuilt]
    assert report.events_applied == 45  # 15 each: the members, the webhook outbox, the audit index
    assert {d.table for d in report.differences} == {
        "tiering_partners",
        "tiering_partner_tiers",
        "tiering_tier_changes",
        "tiering_registrations",
        "tiering_terms_starting",
        "tiering_webhook_endpoints",
        "tiering_webhook_messages",
        "tiering_audit_index",
    }


def test_rebuild_in_place_waits_for_the_workers_to_stop(runtime: ServiceRuntime) -> None:
    enrol(runtime, "Kept")
    runtime.start()
    eventually(lambda: count(runtime, "tiering_partner_tiers") == 2)
    with pytest.raises(WorkerIsRunningError):
        runtime.rebuild()
    runtime.stop()
    report = runtime.rebuild()
    assert report.events_applied >= 3
    assert count(runtime, "tiering_partners") == 1
    assert count(runtime, "tiering_partner_tiers") == 2


def test_the_follower_thread_survives_a_failing_event(runtime: ServiceRuntime) -> None:
    follower = members(runtime)
    failures = {"left": 2}
    real_process = follower.target.process

    def flaky(event: Any, tracking: Tracking) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database blinked")
        real_process(event, tracking)

    follower.target.process = flaky  # type: ignore[method-assign]
    enrol(runtime, "Eventually")
    follower.start()
    eventually(lambda: count(runtime, "tiering_partners") == 1)
    assert follower.last_error is None or "blinked" in follower.last_error
    follower.stop()
    assert threading.active_count() >= 1


def test_own_log_source_reads_every_event(runtime: ServiceRuntime) -> None:
    enrol(runtime, "Counted")
    assert own_log(runtime.app).pending_after(0) == 3


def test_a_follower_of_rare_topics_reads_on_from_the_head(runtime: ServiceRuntime) -> None:
    """It remembers the head up to which it found nothing to apply, and reads on from there,
    not again from its last event, on every event anyone records."""
    enrol(runtime, "Before")
    recorder: Any = runtime.app.recorder
    rare = Source("tiering", recorder, runtime.app.decode, topics=["a topic nobody records"])
    follower = Follower(rare, members(runtime).target, runtime.database)
    follower.start()
    try:
        eventually(lambda: follower._applied_through == recorder.max_notification_id())
        enrol(runtime, "After")  # woken by the notification, it moves on to the new head
        eventually(lambda: follower._applied_through == recorder.max_notification_id())
    finally:
        follower.stop()
    assert follower.position() == 0  # it applied nothing


def test_one_listen_connection_serves_every_follower(runtime: ServiceRuntime) -> None:
    runtime.start()
    eventually(lambda: all(f.ready for f in runtime.followers))
    enrol(runtime, "Heard")
    eventually(lambda: count(runtime, "tiering_partners") == 1)
    with psycopg.connect(runtime.database_url) as conn:
        listening = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
        ).fetchone()
    assert listening == (1,)


def test_pending_is_counted_from_the_head_where_none_was_pending(runtime: ServiceRuntime) -> None:
    """A follower of rare topics stays near the start of the log; its pending count must not
    read the log from there each time (webhook dispatchers ask four times a second)."""
    enrol(runtime, "Counted once")
    follower = members(runtime)
    assert follower.pending() > 0
    follower.catch_up()
    head = runtime.app.recorder.max_notification_id()  # type: ignore[attr-defined]
    assert follower.pending() == 0
    assert follower._applied_through == head
    enrol(runtime, "Counted after")
    assert follower.pending() > 0  # what came after that head is still counted
