"""The history generator (``bench/history.py``, issue 8's 100,000 events) at a small scale: the
three services as real processes, driven over HTTP month by month until their logs hold 3,000
events, with every answer the one the generator expects."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bench.history import SERVICES, generate, month_start
from tests.conftest import JWT_SECRET
from tests.e2e.conftest import Stack


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
