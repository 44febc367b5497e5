"""The hash chain of a log: untouched it verifies; a row updated, deleted, inserted or moved by
SQL behind the service's back is named by its position; a log rewritten together with its chain
is caught by a published checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from eventsourcing.domain import Aggregate, event

from dealreg.audit import published_checkpoints
from shared.audit.chain import GENESIS, Checkpoint, chain_head, link, verify_chain
from shared.audit.checkpoints import Checkpoint as CheckpointJob
from shared.audit.checkpoints import LogChain
from shared.clock import ServiceClock
from shared.database import connect_database
from shared.eventlog import ServiceApplication

pytestmark = pytest.mark.postgres


class Note(Aggregate):
    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text

    @event("Amended")
    def amend(self, text: str) -> None:
        self.text = text


class Notebook(ServiceApplication):
    name = "notebook"


@pytest.fixture
def notebook(database_url: str) -> Iterator[Notebook]:
    database = connect_database(database_url)
    app = Notebook(database)
    for n in range(10):
        app.save(Note(f"note {n}"))  # positions 1..10, one transaction each
    yield app
    app.close()
    database.close()


def rewrite(
    conn: psycopg.Connection[tuple[object, ...]], position: int, old: str, new: str
) -> None:
    conn.execute(
        "UPDATE notebook_events"
        " SET state = convert_to(replace(convert_from(state, 'UTF8'), %s, %s), 'UTF8')"
        " WHERE notification_id = %s",
        (old, new, position),
    )


def verified(database_url: str, **kwargs: object) -> tuple[int, str] | None:
    result = verify_chain(database_url, "public", "notebook", **kwargs)  # type: ignore[arg-type]
    return (result.first_break.position, result.first_break.kind) if result.first_break else None


def test_an_untouched_log_verifies(notebook: Notebook, database_url: str) -> None:
    notes = [Note(f"batch {n}") for n in range(5)]
    notebook.save(*notes)  # several events in one transaction are chained in order
    result = verify_chain(database_url, "public", "notebook")
    assert result.intact, result.first_break
    assert result.events == 15
    head = chain_head(database_url, "public", "notebook")
    assert head is not None
    assert result.head == head
    assert head.position == 15


def test_an_updated_row_is_named(notebook: Notebook, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rewrite(conn, 4, "note 3", "note 9")
    assert verified(database_url) == (4, "changed")


def test_a_deleted_row_is_named(notebook: Notebook, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM notebook_events WHERE notification_id = 6")
    assert verified(database_url) == (6, "deleted")


def test_an_inserted_row_is_named(notebook: Notebook, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO notebook_events (originator_id, originator_version, topic, state)"
            " SELECT originator_id, 2, topic, state FROM notebook_events"
            " WHERE notification_id = 2"
        )
        (position,) = conn.execute("SELECT max(notification_id) FROM notebook_events").fetchone()  # type: ignore[misc]
    assert verified(database_url) == (position, "inserted")


def test_a_row_inserted_into_a_gap_is_named(notebook: Notebook, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM notebook_chain WHERE position = 5")  # a gap, as a rollback leaves
        conn.execute("DELETE FROM notebook_events WHERE notification_id = 5")
        conn.execute(
            "INSERT INTO notebook_events"
            " (originator_id, originator_version, topic, state, notification_id)"
            " SELECT gen_random_uuid(), 1, topic, state, 5 FROM notebook_events"
            " WHERE notification_id = 3"
        )
    assert verified(database_url) == (5, "inserted")


def test_a_swapped_pair_is_named_at_the_first(notebook: Notebook, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        # Swap the positions of two rows: the unique index needs a free number in between.
        conn.execute("UPDATE notebook_events SET notification_id = -1 WHERE notification_id = 3")
        conn.execute("UPDATE notebook_events SET notification_id = 3 WHERE notification_id = 7")
        conn.execute("UPDATE notebook_events SET notification_id = 7 WHERE notification_id = -1")
    assert verified(database_url) == (3, "changed")


def test_a_log_rewritten_with_its_chain_is_caught_by_a_checkpoint(
    notebook: Notebook, database_url: str
) -> None:
    kept = chain_head(database_url, "public", "notebook")
    assert kept is not None
    with psycopg.connect(database_url) as conn:
        rewrite(conn, 2, "note 1", "note 8")
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM notebook_events ORDER BY notification_id"
        ).fetchall()
        previous = GENESIS
        for position, stream, version, topic, state in rows:
            previous = link(previous, position, stream, version, topic, bytes(state))
            conn.execute(
                "UPDATE notebook_chain SET hash = %s WHERE position = %s", (previous, position)
            )
    assert verified(database_url) is None  # consistent with itself...
    checkpoint = Checkpoint("notebook", kept.position, kept.hash, "an auditor's notes")
    assert verified(database_url, checkpoints=[checkpoint]) == (10, "checkpoint")


def test_the_clock_publishes_a_checkpoint_every_so_many_events(
    notebook: Notebook, database_url: str
) -> None:
    job = CheckpointJob(notebook, "notebook", every=10)
    clock = ServiceClock(notebook, "notebook", jobs=[job])
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock.advance(start)  # ten events so far: due
    chain: LogChain = notebook.repository.get(LogChain.create_id("notebook"))
    assert chain.through_position == 10

    notebook.save(Note("one more"))
    clock.advance(start + timedelta(minutes=1))  # five since (the checkpoint's own included)
    assert notebook.repository.get(LogChain.create_id("notebook")).through_position == 10

    recorded = published_checkpoints(notebook.database, "notebook")
    assert [c.position for c in recorded] == [10]
    assert verified(database_url, checkpoints=recorded) is None
    wrong = Checkpoint("notebook", 10, "00" * 32, "a forged copy")
    assert verified(database_url, checkpoints=[wrong]) == (10, "checkpoint")


def test_a_log_that_predates_its_chain_is_chained_when_the_chain_arrives(
    notebook: Notebook, database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DROP TABLE notebook_chain")
    again = Notebook(notebook.database)
    try:
        again.save(Note("after the chain"))
    finally:
        again.close()
    result = verify_chain(database_url, "public", "notebook")
    assert result.intact
    assert result.events == 11
