"""What-if (issue 8): each service's replay engine on a history made to order, in memory."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate

from services.commissions.domain.program import RateCard
from services.commissions.whatif import Recorded, StatementReplay
from services.tiering.domain.partners import Partner
from services.tiering.domain.program import Program
from services.tiering.whatif import RegistrationHistory, Replay
from shared.clock import Clock
from shared.contracts import PolicyAdopted
from shared.money import Money
from shared.policy import ProgramPolicy, default_policy
from shared.whatif import DraftPolicy
from tests.unit.commission_books import Books, at


def with_sell_threshold(certified: str) -> ProgramPolicy:
    document: dict[str, Any] = default_policy().model_dump(mode="json")
    document["tiers"]["motions"]["sell"]["tiers"][1]["any_of"][0]["first_year_value"] = certified
    return ProgramPolicy.model_validate(document)


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


class TieringLog:
    """Tiering's log made to order: what aggregates did, stamped with when it was recorded."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.registration = RegistrationHistory()
        self.clock = Clock("tiering")

    def record(self, aggregate: Aggregate, recorded_at: datetime) -> None:
        events: Sequence[Any] = aggregate.collect_events()
        self.events.extend(dataclasses.replace(e, timestamp=recorded_at) for e in events)

    def run_clock(self, until: datetime, recorded_at: datetime) -> None:
        self.clock.advance(until, decisions=0)
        self.record(self.clock, recorded_at)

    def replay(self, draft: DraftPolicy | None = None) -> Replay:
        replay = Replay(self.registration, draft)
        for position, event in enumerate(self.events, start=1):
            replay.take(position, event)
        return replay


def enrol(log: TieringLog, on: date, **overrides: Any) -> Partner:
    partner = Partner.enrol(
        **{
            "legal_name": "Northwind",
            "home_country": "DE",
            "regions": ["EMEA"],
            "motions": ["sell"],
            "function": "sales",
            "category": "solution_reseller",
            "management": "formal_program",
            "on": on,
            **overrides,
        }
    )
    log.record(partner, at(on, 9))
    return partner


def book(log: TieringLog, partner: Partner, value: str, signed_at: datetime) -> None:
    """A contract registration published, booked by tiering's follower a moment later, with the
    promotion the live policy brought (a decision the replay drops and takes again)."""
    contract_id = uuid.uuid4()
    log.registration.signed[contract_id] = signed_at.date()
    partner.book(
        contract_id=contract_id,
        motion="sell",
        booked_on=signed_at.date(),
        first_year_value=usd(value),
    )
    partner.promote_where_reached(default_policy(), signed_at.date(), lambda m, d: m.amount)
    log.record(partner, signed_at.replace(second=signed_at.second + 1))


def sell_changes(replay: Replay) -> list[tuple[str | None, str, date, str]]:
    return [
        (c.previous_tier, c.tier, c.effective_on, c.reason)
        for c in replay.changes
        if c.motion == "sell"
    ]


def test_the_baseline_takes_the_live_decisions_again_and_a_raised_threshold_does_not() -> None:
    log = TieringLog()
    partner = enrol(log, date(2027, 1, 5))
    book(log, partner, "30000", at(date(2027, 1, 10), 11))

    baseline = log.replay()
    assert sell_changes(baseline) == [
        (None, "registered", date(2027, 1, 5), "enrolled"),
        ("registered", "certified", date(2027, 1, 10), "promotion"),
    ]
    promotion = baseline.changes[-1]
    assert (promotion.recorded_at, promotion.position) == (
        at(date(2027, 1, 10), 11).replace(second=1),
        4,
    )  # stamped with what triggered it: the booking
    assert promotion.metrics["first_year_value"] == Decimal(30000)

    drafted = log.replay(DraftPolicy(with_sell_threshold("50000")))
    assert sell_changes(drafted) == [(None, "registered", date(2027, 1, 5), "enrolled")]
    assert drafted.partners[partner.id].tiers["sell"] == "registered"


def test_each_promotion_is_dated_as_the_live_service_dated_it() -> None:
    """A booked fact on the day registration published it; a recorded one on the service's
    present (the clock's, when it stands ahead of the wall)."""
    log = TieringLog()
    partner = enrol(log, date(2027, 1, 5), regions=["EMEA"])
    # signed a second before midnight, booked by tiering after it
    book(log, partner, "120000", at(date(2027, 1, 10), 23).replace(minute=59, second=58))
    log.run_clock(at(date(2027, 2, 1), 0), recorded_at=at(date(2027, 1, 11), 9))
    partner.operate_in(regions=["EMEA", "NA"], on=date(2027, 1, 11), recorded_by="manager")
    log.record(partner, at(date(2027, 1, 11), 10))  # the clock stands ahead of the wall

    assert sell_changes(log.replay())[1:] == [
        ("registered", "certified", date(2027, 1, 10), "promotion"),
        ("certified", "premier_certified", date(2027, 2, 1), "promotion"),
    ]


def test_reviews_and_demotions_are_taken_at_the_recorded_runs_of_the_clock() -> None:
    log = TieringLog()
    partner = enrol(log, date(2027, 1, 5))
    book(log, partner, "30000", at(date(2027, 1, 10), 11))
    log.run_clock(at(date(2028, 7, 1), 0), recorded_at=at(date(2027, 1, 11), 9))

    baseline = log.replay()
    assert sell_changes(baseline)[-1] == (
        "certified",
        "registered",
        date(2028, 7, 1),
        "demotion",
    )  # below from the review of 2028-04-01, demoted after the grace quarter
    assert baseline.partners[partner.id].last_review == date(2028, 7, 1)
    assert baseline.changes[-1].recorded_at == at(date(2027, 1, 11), 9)

    drafted = log.replay(DraftPolicy(with_sell_threshold("50000")))
    assert [c[3] for c in sell_changes(drafted)] == ["enrolled"]
    assert drafted.partners[partner.id].last_review == date(2028, 7, 1)


def test_a_draft_from_a_day_keeps_earlier_versions_and_promotes_on_its_first_instant() -> None:
    log = TieringLog()
    program = Program()
    program.adopt(
        with_sell_threshold("20000"),
        effective_on=date(2027, 2, 1),
        today=date(2027, 1, 2),
        by="admin",
        note="v2",
    )
    program.adopt(
        with_sell_threshold("15000"),
        effective_on=date(2027, 4, 1),
        today=date(2027, 1, 2),
        by="admin",
        note="v3",
    )
    log.record(program, at(date(2027, 1, 2), 8))
    partner = enrol(log, date(2027, 1, 5))
    book(log, partner, "12000", at(date(2027, 1, 10), 11))
    partner.complete_training(track="sales", level=101, on=date(2027, 3, 5), recorded_by="m")
    log.record(partner, at(date(2027, 3, 5), 10))  # the first event after the draft's day

    draft = DraftPolicy(with_sell_threshold("10000"), effective_on=date(2027, 3, 1))
    drafted = log.replay(draft)
    assert [v.note for v in drafted.program().versions] == [
        "DOMAIN.md's defaults",
        "v2",
        "the draft of a what-if",
    ]
    (promotion,) = [c for c in drafted.changes if c.reason == "promotion"]
    assert (promotion.tier, promotion.effective_on) == ("certified", date(2027, 3, 1))
    assert promotion.recorded_at == datetime(2027, 3, 1, tzinfo=UTC)
    assert [v.note for v in log.replay().program().versions][-1] == "v3"
    assert [c.reason for c in log.replay().changes if c.motion == "sell"] == ["enrolled"]


# --- commissions -----------------------------------------------------------------------------


PARTNER = uuid.uuid4()


def test_statements_differ_by_the_lines_a_lower_tier_pays() -> None:
    """Certified (10%) live, registered (5%) under the draft: each month of 1,000.00 pays 50.00
    less; the new-business bonus is the same."""
    contract_id = uuid.uuid4()
    baseline, draft = Books(), Books(DraftPolicy(with_sell_threshold("50000")))
    for books, tier in ((baseline, "certified"), (draft, "registered")):
        books.tier(PARTNER, tier, date(2026, 12, 1))
        books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1), contract_id=contract_id)
        books.run_clock(at(date(2027, 2, 1), 0))

    compared = StatementReplay(baseline.replay, draft.replay).differences()
    assert compared.statements_compared == 2
    assert [
        (s.period, s.currency, s.baseline, s.draft, s.difference) for s in compared.statements
    ] == [
        ("2027-01", "USD", Decimal("700.00"), Decimal("650.00"), Decimal("-50.00")),
        ("2027-02", "USD", Decimal("100.00"), Decimal("50.00"), Decimal("-50.00")),
    ]
    (line,) = compared.statements[0].lines
    assert line.baseline is not None
    assert line.draft is not None
    assert (line.baseline.rate, line.draft.rate) == (Decimal("0.10"), Decimal("0.05"))
    assert line.contract_id == contract_id


def test_commissions_follows_the_live_versions_before_the_drafts_day_only() -> None:
    draft = DraftPolicy(with_sell_threshold("50000"), effective_on=date(2027, 6, 1))
    books = Books(draft)

    def adopted(version: int, effective_on: date) -> Recorded:
        event = PolicyAdopted(
            log="tiering",
            position=version,
            stream_version=version,
            occurred_at=at(date(2027, 1, version)),
            program_id=uuid.uuid4(),
            version=version,
            effective_on=effective_on,
            document=default_policy().model_dump(mode="json"),
            adopted_by="admin",
            note=f"v{version}",
        )
        return Recorded(event.occurred_at, event.log, event.position, event)

    books.replay.take(adopted(2, date(2027, 3, 1)))
    books.replay.take(adopted(3, date(2027, 7, 1)))  # replaced by the draft
    card = books.log.find(RateCard.create_id())
    assert isinstance(card, RateCard)
    assert [(v.version, v.effective_on) for v in card.policies.versions] == [
        (1, date.min),
        (2, date(2027, 3, 1)),
        (0, date(2027, 6, 1)),
    ]
