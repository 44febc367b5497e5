"""What a partner has achieved and sold, and the metrics each motion's tiers are measured by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from uuid import UUID

from shared.money import Money
from shared.policy import Motion

Convert = Callable[[Money, date], Decimal | None]
"""Money into the reporting currency at the rate published for the month of a day (None when
no rate is published for that month or before it)."""


@dataclass(frozen=True)
class Booking:
    """A term of a contract through the partner (signed, or renewed): its first-year value
    counts for `sell`; a signed referral counts as won for `refer`."""

    booking_id: UUID
    contract_id: UUID
    motion: str
    booked_on: date
    first_year_value: Money
    ends_on: date | None = None
    """The term's last day (not known for bookings recorded before it was kept)."""


@dataclass(frozen=True)
class Certification:
    individual: str
    certification: str
    track: str
    certified_on: date
    expires_on: date | None


@dataclass
class Facts:
    """Everything a partner's tiers are computed from, as recorded in its stream."""

    regions: list[str] = field(default_factory=list)
    bookings: dict[UUID, Booking] = field(default_factory=dict)
    cancelled: dict[UUID, date] = field(default_factory=dict)
    """Bookings cancelled, by booking id, with the day the cancellation took effect."""
    approvals: dict[UUID, tuple[str, date]] = field(default_factory=dict)
    training: dict[str, int] = field(default_factory=dict)
    certifications: dict[tuple[str, str], Certification] = field(default_factory=dict)
    projects: dict[str, date] = field(default_factory=dict)
    integrations: dict[str, date] = field(default_factory=dict)
    joint_customers: dict[str, date] = field(default_factory=dict)
    managed_mrr: dict[date, Money] = field(default_factory=dict)
    """Monthly reports, by the first day of the month."""

    def last_activity(self) -> date | None:
        """The last day the partner registered a deal or brought revenue: a term brings it
        every day from its start to its end, or to the day before its cancellation."""
        days = [approved_on for _, approved_on in self.approvals.values()]
        for booking in self.bookings.values():
            last = booking.ends_on or booking.booked_on
            cancelled_on = self.cancelled.get(booking.booking_id)
            if cancelled_on is not None and cancelled_on <= booking.booked_on:
                continue  # a term cancelled before it started never brought revenue
            if cancelled_on is not None:
                last = min(last, cancelled_on - timedelta(days=1))
            days.append(last)
        return max(days, default=None)


@dataclass(frozen=True)
class Measured:
    metrics: dict[str, Decimal]
    unconverted: tuple[Money, ...] = ()
    """Amounts left out because no rate converts them yet."""


def within(day: date, today: date, window_days: int) -> bool:
    """In the trailing window that ends today: with 365 days, a day 365 days ago counts and
    one 366 days ago does not."""
    return today - timedelta(days=window_days) <= day <= today


def measure(
    facts: Facts, motion: Motion, today: date, window_days: int, convert: Convert
) -> Measured:
    def live(booking: Booking) -> bool:
        cancelled_on = facts.cancelled.get(booking.booking_id)
        return within(booking.booked_on, today, window_days) and (
            cancelled_on is None or cancelled_on > today
        )

    if motion == "sell":
        total, unconverted = Decimal(0), []
        for booking in facts.bookings.values():
            if booking.motion != "sell" or not live(booking):
                continue
            value = convert(booking.first_year_value, booking.booked_on)
            if value is None:
                unconverted.append(booking.first_year_value)
            else:
                total += value
        approved = sum(
            1
            for approved_motion, on in facts.approvals.values()
            if approved_motion == "sell" and within(on, today, window_days)
        )
        return Measured(
            {
                "first_year_value": total,
                "approved_registrations": Decimal(approved),
                "regions": Decimal(len(facts.regions)),
            },
            tuple(unconverted),
        )
    if motion == "refer":
        won = sum(1 for b in facts.bookings.values() if b.motion == "refer" and live(b))
        return Measured({"won_referrals": Decimal(won)})
    if motion == "service":
        current = {
            c.individual
            for c in facts.certifications.values()
            if c.track == "services"
            and c.certified_on <= today
            and (c.expires_on is None or c.expires_on >= today)
        }
        projects = sum(1 for on in facts.projects.values() if within(on, today, window_days))
        return Measured(
            {
                "certifications": Decimal(len(current)),
                "projects": Decimal(projects),
                "services_training": Decimal(facts.training.get("services", 0)),
            }
        )
    if motion == "manage":
        reports = [month for month in facts.managed_mrr if within(month, today, window_days)]
        if not reports:
            return Measured({"managed_mrr": Decimal(0)})
        latest = facts.managed_mrr[max(reports)]
        value = convert(latest, max(reports))
        if value is None:
            return Measured({"managed_mrr": Decimal(0)}, (latest,))
        return Measured({"managed_mrr": value})
    return Measured(
        {
            "integrations": Decimal(sum(1 for on in facts.integrations.values() if on <= today)),
            "joint_customers": Decimal(
                sum(1 for on in facts.joint_customers.values() if on <= today)
            ),
        }
    )
