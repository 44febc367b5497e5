"""The history generator (``bench/history.py``, issue 8's 100,000 events) at a small scale: the
three services as real processes, driven over HTTP month by month until their logs hold 3,000
events, with every answer the one the generator expects."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.history import MAX_CONNECTIONS, SERVICES, generate, month_start
from bench.services import tcp_server
from tests.conftest import JWT_SECRET
from tests.e2e.conftest import Stack, running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The three services on a PostgreSQL of their own, with the connections they take under this
    load (more than the 100 of a default server: BENCHMARKS.md). On the suite's server they took
    up to 88 at once on a busy machine, so that anything else connecting to it (the suite's other
    run, another user of a shared server) made their next connection fail with "too many
    clients", and the request answer 500."""
    with (
        tcp_server(tmp_path / "postgres", MAX_CONNECTIONS) as url,
        running_stack(url, tmp_path) as running,
    ):
        yield running


@pytest.mark.long
def test_a_generated_history_reaches_its_size_with_every_answer_as_expected(
    stack: Stack,
) -> None:
    start = month_start(datetime.now(UTC).date(), 1)
    result = asyncio.run(
        generate(
            {name: stack.url(name) for name in SERVICES},
            stack.database_url,
            3000,
            seed=1,
            start=start,
            secret=JWT_SECRET,
        )
    )

    assert result.stats.surprises == []
    assert sum(result.events.values()) >= 3000
    assert all(result.events.values()), result.events
    assert result.months >= 6
    outcomes = result.stats.outcomes
    for kind in (
        "registration approved",
        "registration conflict",
        "registration pending_review",
        "contract sell",
        "contract refer",
        "contract direct",
        "contract renewal",
        "contract cancellation",
        "rerun rows unchanged",
    ):
        assert outcomes[kind] > 0, kind
    requests = result.stats.requests
    assert requests["POST commissions /v1/partners/{id}/premium-associate"] == 1
    assert requests["POST tiering /v1/program/policy"] == 1
