"""A save of any size is recorded, over TCP and over the embedded server's Unix socket alike.

The library's recorder sent a save in pipeline mode; over a Unix-domain socket a save of more
than about 300 kB never finished (about 5 MB over TCP): client and server both blocked writing.
The chained recorders send it statement by statement, still in one transaction under the table
lock, with the chain extended in that transaction. A hang fails the test after a minute rather
than hanging the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment, get_topic

from shared.audit.chain import ChainedProcessRecorder, chain_head, verify_chain
from shared.database import connect_database, eventsourcing_env
from shared.eventlog import ServiceApplication

pytestmark = pytest.mark.postgres

T = TypeVar("T")
PAGE = "x" * 2_000  # a page's text: 6 MB in all, past the TCP limit too
WRITTEN = "tests.integration.test_large_saves:Page.Written"


class Page(Aggregate):
    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text


class Book(ServiceApplication):
    name = "book"


@pytest.fixture
def book(database_url: str) -> Iterator[Book]:
    database = connect_database(database_url)
    app = Book(database)
    yield app
    app.close()
    database.close()


def within(seconds: float, call: Callable[[], T]) -> T:
    """The call's result, or a failure if it has not returned in time (it keeps hanging in a
    daemon thread, which the test run leaves behind)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"not done after {seconds} s: the save hangs")
    if errors:
        raise errors[0]
    return result[0]


def test_a_six_megabyte_save_is_recorded_and_chained(book: Book, database_url: str) -> None:
    book.save(Page("first"))  # the chain has a head before the big save
    pages = [Page(f"{n} {PAGE}") for n in range(3_000)]
    within(60, lambda: book.save(*pages))

    assert book.repository.get(pages[-1].id).text.startswith("2999 ")
    head = chain_head(database_url, "public", "book")
    assert head is not None
    assert head.position == 3_001
    verification = verify_chain(database_url, "public", "book")
    assert verification.intact
    assert verification.events == 3_001


def test_a_failing_big_save_records_nothing(book: Book, database_url: str) -> None:
    taken = Page("taken")
    book.save(taken)
    clash = StoredEvent(originator_id=taken.id, originator_version=1, topic=WRITTEN, state=b"{}")
    big = [StoredEvent(uuid4(), 1, WRITTEN, PAGE.encode() * 2) for _ in range(500)]
    with pytest.raises(IntegrityError):
        within(60, lambda: book.recorder.insert_events([*big, clash]))

    with psycopg.connect(database_url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM book_events), (SELECT count(*) FROM book_chain)"
        ).fetchone()
    assert counts == (1, 1)
    assert verify_chain(database_url, "public", "book").intact


def test_a_process_records_a_big_decision_with_its_tracking(database_url: str) -> None:
    env = Environment(
        "ledger",
        {
            **eventsourcing_env(database_url),
            "PROCESS_RECORDER_TOPIC": get_topic(ChainedProcessRecorder),
        },
    )
    recorder = PostgresFactory(env).process_recorder()
    assert isinstance(recorder, ChainedProcessRecorder)
    events = [StoredEvent(uuid4(), 1, WRITTEN, PAGE.encode() * 2) for _ in range(500)]
    positions = within(60, lambda: recorder.insert_events(events, tracking=Tracking("up", 7)))

    assert list(positions or []) == list(range(1, 501))
    assert recorder.max_tracking_id("up") == 7
    with pytest.raises(IntegrityError):  # the same upstream event twice: refused, whole
        recorder.insert_events(events[:1], tracking=Tracking("up", 7))
    assert verify_chain(database_url, "public", "ledger").events == 500
    # Tracking alone (a decision that changes nothing) is recorded too.
    assert recorder.insert_events([], tracking=Tracking("up", 8)) is None
    assert recorder.max_tracking_id("up") == 8
    recorder.datastore.close()
