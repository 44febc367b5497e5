"""DOMAIN.md's commission rules as worked examples, the numbers written out (issue 6)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.commissions.domain.partners import ElectionError
from services.commissions.domain.rules import CommissionRules
from shared.policy import default_policy
from tests.unit.commission_books import Books, at

PARTNER = uuid.uuid4()
OTHER = uuid.uuid4()


def month_end(year: int, month: int) -> datetime:
    """The first instant of the next month: the month is closed and its statements issued."""
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


@pytest.fixture
def books() -> Books:
    return Books()


def test_margin_by_tier_every_month_of_the_term_and_new_business_bonus(books: Books) -> None:
    """A certified partner (10%) signs a new customer at 1,000.00 USD a month for 12 months:
    twelve monthly lines of 100.00 and one bonus line of 600.00 (5% of 12,000.00)."""
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1))
    books.run_clock(month_end(2027, 12))

    assert books.lines(PARTNER, "2027-01") == [
        ("new_business_bonus", "600.00"),
        ("resale_margin", "100.00"),
    ]
    for month in range(2, 13):
        assert books.lines(PARTNER, f"2027-{month:02d}") == [("resale_margin", "100.00")]
    january = books.statement(PARTNER, "2027-01")
    assert january.issued is not None
    assert january.issued.payable == {"USD": Decimal("700.00")}
    margin = january.lines[1]
    assert margin.rate == Decimal("0.10")
    assert margin.base.amount == Decimal("1000.00")
    assert "certified margin 10%" in margin.explanation
    assert margin.caused_by[0].startswith("registration#")
    assert any(cause.startswith("tiering#") for cause in margin.caused_by)  # the tier's event


def test_margin_is_locked_for_the_customers_life(books: Books) -> None:
    """Promoted to alliance, the same customer's renewal still earns 10% while a new customer
    earns 20%."""
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    acme = books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1), term_months=1)
    books.tier(PARTNER, "alliance", date(2027, 1, 15))
    books.renew(acme, date(2027, 2, 1), "1000.00", term_months=1)
    books.sign(PARTNER, "globex.com", "2000.00", date(2027, 2, 1))
    books.sign(PARTNER, "acme.com", "500.00", date(2027, 2, 1), term_months=1)  # an expansion
    books.run_clock(month_end(2027, 2))

    lines = sorted(books.lines(PARTNER, "2027-02"))
    assert lines == [
        ("new_business_bonus", "1200.00"),  # globex: 5% of 24,000.00
        ("resale_margin", "100.00"),  # acme's renewal: 10% of 1,000.00, locked
        ("resale_margin", "400.00"),  # globex: 20% of 2,000.00
        ("resale_margin", "50.00"),  # acme's expansion: 10% of 500.00, locked, no bonus
    ]


def test_poached_contract_earns_at_most_five_percent_and_no_bonus(books: Books) -> None:
    books.tier(OTHER, "alliance", date(2026, 1, 1))
    books.sign(OTHER, "initech.com", "1000.00", date(2027, 3, 1), poached=True)
    books.run_clock(month_end(2027, 3))

    assert books.lines(OTHER, "2027-03") == [("poaching_cap", "50.00")]
    assert "capped at 5%" in books.statement(OTHER, "2027-03").lines[0].explanation


def test_referral_fee_is_ten_percent_of_first_year_value_once(books: Books) -> None:
    """500.00 a month for 12 months plus 1,000.00 one-time: first-year value 7,000.00."""
    books.sign(
        PARTNER, "umbrella.com", "500.00", date(2027, 1, 10), one_time="1000.00", motion="refer"
    )
    books.run_clock(month_end(2027, 3))

    assert books.lines(PARTNER, "2027-01") == [("referral_fee", "700.00")]
    with pytest.raises(AssertionError):
        books.statement(PARTNER, "2027-02")  # no monthly line for a referral


def test_premium_associate_earns_three_percent_of_mrr_from_the_sixth_referral(
    books: Books,
) -> None:
    for n in range(5):
        books.sign(PARTNER, f"ref{n}.com", "100.00", date(2027, 1, 1 + n), motion="refer")
    rules = CommissionRules(books.log)
    rules.elect_premium_associate(PARTNER, at=at(date(2027, 1, 20)), by="partner")
    books.log.keep(rules.changed())
    books.sign(PARTNER, "sixth.com", "2000.00", date(2027, 2, 1), term_months=3, motion="refer")
    books.run_clock(month_end(2027, 4))

    assert books.lines(PARTNER, "2027-01") == [("referral_fee", "120.00")] * 5
    for month in ("2027-02", "2027-03", "2027-04"):
        assert books.lines(PARTNER, month) == [("premium_associate", "60.00")]


def test_premium_associate_needs_five_won_referrals_to_elect(books: Books) -> None:
    for n in range(4):
        books.sign(PARTNER, f"ref{n}.com", "100.00", date(2027, 1, 1 + n), motion="refer")
    rules = CommissionRules(books.log)
    with pytest.raises(ElectionError, match=r"needs 5 won referrals .* has 4"):
        rules.elect_premium_associate(PARTNER, at=at(date(2027, 1, 20)), by="partner")


def test_cancellation_in_month_two_claws_back_the_bonus(books: Books) -> None:
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    acme = books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1))
    books.run_clock(month_end(2027, 1))
    books.cancel(acme, date(2027, 2, 20))
    books.run_clock(month_end(2027, 3))

    february = books.statement(PARTNER, "2027-02")
    assert [(line.rule, str(line.amount.amount)) for line in february.lines] == [
        ("resale_margin", "100.00"),
        ("clawback", "-600.00"),
    ]
    bonus = books.statement(PARTNER, "2027-01").lines[0]
    assert february.lines[1].corrects == bonus.line_id
    assert february.issued is not None
    assert february.issued.payable == {}
    assert february.issued.carried_out == {"USD": Decimal("-500.00")}  # a negative balance
    with pytest.raises(AssertionError):
        books.statement(PARTNER, "2027-03")  # the contract earns no more


def test_a_negative_balance_carries_forward_to_the_next_statement(books: Books) -> None:
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    acme = books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1))
    books.run_clock(month_end(2027, 1))
    books.cancel(acme, date(2027, 2, 20))
    books.run_clock(month_end(2027, 2))
    books.sign(None, "globex.com", "1.00", date(2027, 3, 1))  # direct: globex is not new
    books.sign(PARTNER, "globex.com", "3000.00", date(2027, 4, 1), term_months=2)
    books.run_clock(month_end(2027, 5))

    april = books.statement(PARTNER, "2027-04").issued
    may = books.statement(PARTNER, "2027-05").issued
    assert april is not None
    assert may is not None
    assert april.carried_in == {"USD": Decimal("-500.00")}
    assert april.totals == {"USD": Decimal("300.00")}  # 10%, locked at certified; no bonus
    assert april.carried_out == {"USD": Decimal("-200.00")}
    assert may.carried_in == {"USD": Decimal("-200.00")}
    assert may.payable == {"USD": Decimal("100.00")}


def test_cancellation_after_ninety_days_keeps_the_bonus(books: Books) -> None:
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    acme = books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1))
    books.cancel(acme, date(2027, 4, 2))  # 91 days after its start
    books.run_clock(month_end(2027, 4))

    assert [rule for rule, _ in books.lines(PARTNER, "2027-04")] == ["resale_margin"]
    assert books.lines(PARTNER, "2027-01")[0] == ("new_business_bonus", "600.00")


def test_cancellation_ninety_days_after_start_still_claws_back(books: Books) -> None:
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    acme = books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1))
    books.cancel(acme, date(2027, 4, 1))  # 90 days
    books.run_clock(month_end(2027, 4))

    assert books.lines(PARTNER, "2027-04") == [("clawback", "-600.00")]


def test_a_cancellation_dated_back_reverses_the_months_paid_after_it(books: Books) -> None:
    """A closed month never changes: the correction is an adjustment line in the open month,
    linked to the line it corrects."""
    books.tier(PARTNER, "registered", date(2026, 12, 1))
    acme = books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1))
    books.run_clock(month_end(2027, 5))  # June 1st: June's month has begun and earned
    closed_april = books.statement(PARTNER, "2027-04").lines
    books.cancel(acme, date(2027, 4, 15), reported=date(2027, 6, 10))  # April stays owed
    books.run_clock(month_end(2027, 6))

    assert books.statement(PARTNER, "2027-04").lines == closed_april
    june = books.statement(PARTNER, "2027-06").lines
    assert [(line.rule, str(line.amount.amount), line.earned_in) for line in june] == [
        ("resale_margin", "50.00", "2027-06"),
        ("cancellation_adjustment", "-50.00", "2027-04"),
        ("cancellation_adjustment", "-50.00", "2027-04"),
    ]
    paid_after = {
        line.line_id
        for period in ("2027-05", "2027-06")
        for line in books.statement(PARTNER, period).lines
        if line.rule == "resale_margin"
    }
    assert {line.corrects for line in june[1:]} == paid_after
    assert books.statement(PARTNER, "2027-06").issued is not None
    assert books.statement(PARTNER, "2027-06").issued.totals == {"USD": Decimal("-50.00")}


def test_a_contract_reported_late_earns_its_past_months_in_the_open_month(books: Books) -> None:
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    books.run_clock(month_end(2027, 2))
    books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1), reported=date(2027, 3, 5))
    books.run_clock(month_end(2027, 3))

    march = books.statement(PARTNER, "2027-03").lines
    assert [(line.rule, line.earned_in) for line in march] == [
        ("new_business_bonus", "2027-01"),
        ("resale_margin", "2027-01"),
        ("resale_margin", "2027-02"),
        ("resale_margin", "2027-03"),
    ]


def test_a_direct_contract_makes_the_customer_known_no_bonus_after_it(books: Books) -> None:
    books.sign(None, "acme.com", "5000.00", date(2027, 1, 1))
    books.sign(PARTNER, "acme.com", "1000.00", date(2027, 2, 1))
    books.run_clock(month_end(2027, 2))

    assert books.lines(PARTNER, "2027-02") == [("resale_margin", "50.00")]  # registered: 5%


@pytest.mark.parametrize(
    ("mrr", "currency", "expected"),
    [
        ("1.25", "USD", "0.12"),  # 0.125: half-even rounds to the even cent
        ("1.35", "USD", "0.14"),  # 0.135
        ("12345", "JPY", "1234"),  # 1234.5: no minor unit, half-even
        ("12355", "JPY", "1236"),  # 1235.5
        ("10.005", "KWD", "1.000"),  # 1.0005: three decimals
    ],
)
def test_each_line_is_rounded_half_even_once_to_the_minor_unit(
    books: Books, mrr: str, currency: str, expected: str
) -> None:
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    books.sign(None, "known.com", "1", date(2026, 1, 1), currency=currency)
    books.sign(PARTNER, "known.com", mrr, date(2027, 1, 1), currency=currency, term_months=1)
    books.run_clock(month_end(2027, 1))

    assert books.lines(PARTNER, "2027-01") == [("resale_margin", expected)]


def test_totals_are_per_currency(books: Books) -> None:
    books.sign(None, "a.de", "1", date(2026, 1, 1))
    books.sign(None, "b.com", "1", date(2026, 1, 1))
    books.sign(PARTNER, "a.de", "1000.00", date(2027, 1, 1), currency="EUR", term_months=1)
    books.sign(PARTNER, "b.com", "300.00", date(2027, 1, 1), term_months=1)
    books.run_clock(month_end(2027, 1))

    issued = books.statement(PARTNER, "2027-01").issued
    assert issued is not None
    assert issued.totals == {"EUR": Decimal("50.00"), "USD": Decimal("15.00")}


def test_renewals_continue_the_accruals_with_their_new_mrr(books: Books) -> None:
    books.tier(PARTNER, "certified", date(2026, 12, 1))
    acme = books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 15), term_months=2)
    books.renew(acme, date(2027, 3, 15), "1200.00", term_months=2)
    books.run_clock(month_end(2027, 6))

    assert books.lines(PARTNER, "2027-03") == [("resale_margin", "120.00")]
    assert books.lines(PARTNER, "2027-04") == [("resale_margin", "120.00")]
    with pytest.raises(AssertionError):
        books.statement(PARTNER, "2027-05")


def test_a_new_policy_version_sets_the_rates_from_its_day(books: Books) -> None:
    document = default_policy().model_dump(mode="json")
    document["commissions"]["resale_margin"]["registered"] = "0.07"
    books.adopt(2, date(2027, 2, 1), document)
    books.sign(None, "a.com", "1", date(2026, 1, 1))
    books.sign(None, "b.com", "1", date(2026, 1, 1))
    books.sign(PARTNER, "a.com", "1000.00", date(2027, 1, 10), term_months=1)
    books.sign(PARTNER, "b.com", "1000.00", date(2027, 2, 10), term_months=1)
    books.run_clock(month_end(2027, 2))

    assert books.lines(PARTNER, "2027-01") == [("resale_margin", "50.00")]
    assert books.lines(PARTNER, "2027-02") == [("resale_margin", "70.00")]


def test_the_clock_run_twice_to_the_same_instant_pays_nothing_twice(books: Books) -> None:
    books.sign(PARTNER, "acme.com", "1000.00", date(2027, 1, 1))
    books.run_clock(month_end(2027, 2))
    before = books.all_statements()
    books.run_clock(month_end(2027, 2))
    assert books.all_statements() == before


def test_a_premium_associates_referral_earns_its_term_not_its_renewals(books: Books) -> None:
    for n in range(5):
        books.sign(PARTNER, f"ref{n}.com", "100.00", date(2027, 1, 1 + n), motion="refer")
    rules = CommissionRules(books.log)
    rules.elect_premium_associate(PARTNER, at=at(date(2027, 1, 20)), by="partner")
    books.log.keep(rules.changed())
    sixth = books.sign(
        PARTNER, "sixth.com", "2000.00", date(2027, 2, 1), term_months=1, motion="refer"
    )
    books.renew(sixth, date(2027, 3, 1), "2000.00", term_months=1)
    books.run_clock(month_end(2027, 3))

    assert books.lines(PARTNER, "2027-02") == [("premium_associate", "60.00")]
    with pytest.raises(AssertionError):
        books.statement(PARTNER, "2027-03")
