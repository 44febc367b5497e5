"""A partner's tiers from what it books and achieves: window, promotion, grace, inactivity."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder

from services.tiering.domain.metrics import measure, within
from services.tiering.domain.partners import Partner
from services.tiering.domain.program import PolicyChangeError, Program
from shared.codec import register_transcodings
from shared.money import Money
from shared.policy import ProgramPolicy, default_policy

POLICY = default_policy()
EUR_IN_USD = Decimal("1.10")


def usd(money: Money, day: date) -> Decimal | None:
    """Rates published from 2027 on: USD is itself, EUR at 1.10; nothing else converts."""
    if money.currency == "USD":
        return money.amount
    if money.currency == "EUR" and day >= date(2027, 1, 1):
        return money.amount * EUR_IN_USD
    return None


def partner(regions: tuple[str, ...] = ("EMEA",)) -> Partner:
    return Partner.enrol(
        legal_name="Northwind",
        home_country="DE",
        regions=list(regions),
        motions=["sell", "service"],
        function="sales",
        category="solution_reseller",
        management="formal_program",
        on=date(2027, 1, 1),
    )


def book(
    p: Partner, amount: str, on: date, currency: str = "USD", motion: str = "sell"
) -> uuid.UUID:
    contract_id = uuid.uuid4()
    p.book(
        contract_id=contract_id,
        motion=motion,
        booked_on=on,
        first_year_value=Money(Decimal(amount), currency),
    )
    return contract_id


def changes(p: Partner) -> list[tuple[str, str | None, str, str]]:
    return [
        (e.motion, e.previous_tier, e.tier, e.reason)  # type: ignore[attr-defined]
        for e in p.collect_events()
        if type(e).__name__ == "TierChanged" and e.reason != "enrolled"  # type: ignore[attr-defined]
    ]


def test_the_trailing_window_is_365_days() -> None:
    today = date(2028, 3, 1)
    assert within(today - timedelta(days=365), today, 365)
    assert not within(today - timedelta(days=366), today, 365)
    p = partner()
    book(p, "30000", today - timedelta(days=366))
    facts = p.facts
    assert measure(facts, "sell", today, 365, usd).metrics["first_year_value"] == 0
    assert measure(facts, "sell", today - timedelta(days=1), 365, usd).metrics[
        "first_year_value"
    ] == Decimal(30000)


def test_promotion_the_moment_a_threshold_is_crossed_with_the_metrics_that_justified_it() -> None:
    p = partner()
    book(p, "24999.99", date(2027, 2, 1))
    p.promote_where_reached(POLICY, date(2027, 2, 1), usd)
    book(p, "0.01", date(2027, 2, 2))
    p.promote_where_reached(POLICY, date(2027, 2, 2), usd)
    events = [e for e in p.collect_events() if type(e).__name__ == "TierChanged"]
    promotion = events[-1]
    assert (promotion.tier, promotion.reason, promotion.effective_on) == (  # type: ignore[attr-defined]
        "certified",
        "promotion",
        date(2027, 2, 2),
    )
    assert promotion.metrics["first_year_value"] == Decimal("25000.00")  # type: ignore[attr-defined]


def test_premier_needs_two_regions() -> None:
    one, two = partner(("EMEA",)), partner(("EMEA", "NA"))
    for p in (one, two):
        book(p, "100000", date(2027, 3, 1))
        p.promote_where_reached(POLICY, date(2027, 3, 1), usd)
    assert one.tiers["sell"] == "certified"
    assert two.tiers["sell"] == "premier_certified"


def test_ten_approved_registrations_are_the_early_indicator() -> None:
    p = partner()
    for n in range(10):
        p.count_approval(
            registration_id=uuid.uuid4(), motion="sell", approved_on=date(2027, 4, n + 1)
        )
        p.promote_where_reached(POLICY, date(2027, 4, n + 1), usd)
        assert p.tiers["sell"] == ("certified" if n == 9 else "registered")


def test_amounts_convert_at_the_months_rate_and_unconvertible_ones_are_named() -> None:
    p = partner()
    book(p, "25000", date(2027, 5, 1), currency="EUR")
    book(p, "1000", date(2026, 12, 1), currency="EUR")  # no rate published that month
    measured = measure(p.facts, "sell", date(2027, 5, 1), 365, usd)
    assert measured.metrics["first_year_value"] == Decimal("27500.000")
    assert measured.unconverted == (Money(Decimal(1000), "EUR"),)


def test_a_cancelled_contract_stops_counting() -> None:
    p = partner()
    contract = book(p, "30000", date(2027, 2, 1))
    p.cancel_booking(contract_id=contract, on=date(2027, 3, 1))
    assert (
        measure(p.facts, "sell", date(2027, 2, 15), 365, usd).metrics["first_year_value"] == 30000
    )
    assert measure(p.facts, "sell", date(2027, 3, 1), 365, usd).metrics["first_year_value"] == 0


def test_demotion_waits_one_full_quarter_below() -> None:
    p = partner()
    book(p, "30000", date(2027, 2, 1))
    p.promote_where_reached(POLICY, date(2027, 2, 1), usd)
    p.collect_events()
    # The contract leaves the window on 2028-02-02: below from then on.
    p.review(POLICY, date(2028, 1, 1), usd)  # still above
    assert p.tiers["sell"] == "certified"
    p.review(POLICY, date(2028, 4, 1), usd)  # first review below: grace
    assert p.tiers["sell"] == "certified"
    p.review(POLICY, date(2028, 7, 1), usd)  # still below: demoted
    assert p.tiers["sell"] == "registered"
    assert ("sell", "certified", "registered", "demotion") in changes(p)


def test_back_above_at_the_next_review_keeps_the_tier() -> None:
    p = partner()
    book(p, "30000", date(2027, 2, 1))
    p.promote_where_reached(POLICY, date(2027, 2, 1), usd)
    p.review(POLICY, date(2028, 4, 1), usd)  # below: grace
    book(p, "30000", date(2028, 5, 1))
    p.review(POLICY, date(2028, 7, 1), usd)  # above again
    p.review(POLICY, date(2028, 10, 1), usd)
    assert p.tiers["sell"] == "certified"
    names = [type(e).__name__ for e in p.collect_events()]
    assert names.count("FellBelowThreshold") == 1
    assert names.count("BackAboveThreshold") == 1


def test_no_registration_and_no_revenue_in_the_window_is_flagged_inactive() -> None:
    p = partner()  # enrolled on 2027-01-01
    for review_on in (date(2027, 4, 1), date(2027, 10, 1), date(2028, 1, 1), date(2028, 4, 1)):
        p.review(POLICY, review_on, usd)
    book(p, "100", date(2028, 5, 1))
    p.review(POLICY, date(2028, 7, 1), usd)
    flagged = [e for e in p.collect_events() if type(e).__name__ == "FlaggedInactive"]
    # Only once a member for 12 months (DOMAIN.md: "enrolled for at least 12 months").
    assert [e.review_on for e in flagged] == [date(2028, 1, 1), date(2028, 4, 1)]  # type: ignore[attr-defined]


def test_service_tiers_count_current_certifications_and_recent_projects() -> None:
    p = partner()
    for n, expires in enumerate([None, date(2027, 12, 31), date(2027, 6, 30)]):
        p.certify(
            individual=f"engineer {n}",
            certification="deployment",
            track="services",
            certified_on=date(2027, 1, 10),
            expires_on=expires,
            recorded_by="manager",
        )
    p.complete_project(project="rollout", completed_on=date(2027, 2, 1), recorded_by="manager")
    assert measure(p.facts, "service", date(2027, 6, 30), 365, usd).metrics["certifications"] == 3
    assert measure(p.facts, "service", date(2027, 7, 1), 365, usd).metrics["certifications"] == 2
    p.promote_where_reached(POLICY, date(2027, 7, 1), usd)
    assert p.tiers["service"] == "certified"


class Stored(Application[uuid.UUID]):
    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        register_transcodings(transcoder)


def test_every_fact_and_decision_survives_the_log() -> None:
    p = partner(("EMEA", "NA"))
    book(p, "120000", date(2027, 2, 1), currency="EUR")
    p.count_approval(registration_id=uuid.uuid4(), motion="sell", approved_on=date(2027, 2, 1))
    p.complete_training(track="services", level=201, on=date(2027, 2, 1), recorded_by="lms")
    p.certify(
        individual="Ada",
        certification="deployment",
        track="services",
        certified_on=date(2027, 2, 1),
        expires_on=None,
        recorded_by="manager",
    )
    p.certify_integration(integration="connector", on=date(2027, 2, 1), recorded_by="manager")
    p.record_joint_customer(customer="acme.com", since=date(2027, 2, 1), recorded_by="manager")
    p.report_managed_revenue(
        month=date(2027, 2, 14), mrr=Money(Decimal("2500.00"), "USD"), recorded_by="manager"
    )
    p.promote_where_reached(POLICY, date(2027, 2, 1), usd)
    p.review(POLICY, date(2027, 4, 1), usd)
    app = Stored()
    app.save(p)
    copy: Partner = app.repository.get(p.id)
    assert (
        copy.tiers
        == p.tiers
        == {
            "refer": "associate",
            "sell": "premier_certified",
            "service": "registered",
        }
    )
    assert copy.facts == p.facts


def test_a_policy_with_a_future_effective_date_changes_nothing_before_it() -> None:
    program = Program()
    document = default_policy().model_dump(mode="json")
    document["tiers"]["motions"]["sell"]["tiers"][1]["any_of"][0]["first_year_value"] = "50000"
    raised = ProgramPolicy.model_validate(document)
    assert raised.tiers.motions["sell"].tiers[1].any_of[0]["first_year_value"] == 50000
    program.adopt(
        raised, effective_on=date(2027, 7, 1), today=date(2027, 6, 1), by="admin", note=""
    )
    assert program.policy_on(date(2027, 6, 30)) == default_policy()
    assert program.policy_on(date(2027, 7, 1)) == raised
    assert [v.version for v in program.changes_between(date(2027, 6, 1), date(2027, 7, 1))] == [2]

    early, late = partner(), partner()
    for p, day in ((early, date(2027, 6, 30)), (late, date(2027, 7, 1))):
        book(p, "30000", day)
        p.promote_where_reached(program.policy_on(day), day, program.convert)
    assert early.tiers["sell"] == "certified"
    assert late.tiers["sell"] == "registered"


def test_a_policy_cannot_start_in_the_past_and_rates_must_make_sense() -> None:
    program = Program()
    with pytest.raises(PolicyChangeError, match="in the past"):
        program.adopt(
            default_policy(), effective_on=date(2027, 1, 1), today=date(2027, 2, 1), by="a", note=""
        )
    for rates, complaint in (
        ({"USD": Decimal(1)}, "reporting currency"),
        ({"EUR": Decimal(0)}, "positive"),
        ({"eur": Decimal(1)}, "ISO 4217"),
        ({}, "no rates"),
    ):
        with pytest.raises(PolicyChangeError, match=complaint):
            program.publish_rates(month=date(2027, 1, 1), rates=rates, by="finance")


def test_rates_of_a_month_or_the_latest_before_it() -> None:
    program = Program()
    program.publish_rates(month=date(2027, 1, 15), rates={"EUR": Decimal("1.10")}, by="finance")
    program.publish_rates(month=date(2027, 3, 1), rates={"EUR": Decimal("1.20")}, by="finance")
    eur = Money(Decimal(100), "EUR")
    assert program.convert(eur, date(2026, 12, 31)) is None
    assert program.convert(eur, date(2027, 2, 28)) == Decimal("110.00")
    assert program.convert(eur, date(2027, 3, 31)) == Decimal("120.00")
    assert program.convert(Money(Decimal(5), "GBP"), date(2027, 3, 31)) is None
    assert program.convert(Money(Decimal(5), "USD"), date(2020, 1, 1)) == 5
    app = Stored()
    app.save(program)
    assert app.repository.get(program.id).rates == program.rates


def test_a_tier_the_policy_no_longer_names_gives_way_to_the_tier_reached() -> None:
    document = default_policy().model_dump(mode="json")
    document["tiers"]["motions"]["sell"]["tiers"][1]["name"] = "silver"
    document["commissions"]["resale_margin"]["silver"] = document["commissions"][
        "resale_margin"
    ].pop("certified")
    renamed = ProgramPolicy.model_validate(document)
    p = partner()
    book(p, "30000", date(2027, 2, 1))
    p.promote_where_reached(POLICY, date(2027, 2, 1), usd)
    assert p.tiers["sell"] == "certified"
    p.review(renamed, date(2027, 4, 1), usd)
    assert p.tiers["sell"] == "silver"
