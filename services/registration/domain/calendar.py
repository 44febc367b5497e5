"""Business days: Monday to Friday. Public holidays are not modelled (yet)."""

from __future__ import annotations

from datetime import datetime, timedelta

REVIEW_DEADLINE_BUSINESS_DAYS = 2


def add_business_days(start: datetime, days: int) -> datetime:
    """The same time of day ``days`` business days later; a weekend start counts from Monday."""
    moment = start
    while moment.weekday() >= 5:
        moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    added = 0
    while added < days:
        moment += timedelta(days=1)
        if moment.weekday() < 5:
            added += 1
    return moment
