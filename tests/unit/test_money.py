from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.money import Money, MoneyAsDict


def test_rounds_half_even_to_the_minor_unit() -> None:
    assert Money(Decimal("0.125"), "USD").rounded() == Money(Decimal("0.12"), "USD")
    assert Money(Decimal("0.135"), "USD").rounded() == Money(Decimal("0.14"), "USD")
    assert Money(Decimal("1234.5"), "JPY").rounded() == Money(Decimal("1234"), "JPY")
    assert Money(Decimal("1.0005"), "KWD").rounded() == Money(Decimal("1.000"), "KWD")


def test_refuses_floats_and_bad_currencies() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(Decimal(1), "usd")


amounts = st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False)


@given(amounts, st.sampled_from(["USD", "EUR", "JPY", "KWD"]))
def test_rounding_moves_by_at_most_half_a_minor_unit(amount: Decimal, currency: str) -> None:
    money = Money(amount, currency)
    rounded = money.rounded()
    unit = Decimal(1).scaleb(-{"JPY": 0, "KWD": 3}.get(currency, 2))
    assert abs(rounded.amount - amount) <= unit / 2
    assert rounded.rounded() == rounded


@given(amounts, st.sampled_from(["USD", "JPY"]))
def test_transcoding_round_trips_exactly(amount: Decimal, currency: str) -> None:
    transcoding = MoneyAsDict()
    money = Money(amount, currency)
    assert transcoding.decode(transcoding.encode(money)) == money
