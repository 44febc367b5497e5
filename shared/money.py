"""Exact money: a decimal amount with its ISO 4217 currency; never a float."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from eventsourcing.persistence import Transcoding
from pydantic import BaseModel, Field

# ISO 4217 minor units that differ from two; every other currency code uses two.
_MINOR_UNITS = {
    "BHD": 3,
    "BIF": 0,
    "CLF": 4,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "UYW": 4,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"Money amount must be a Decimal, not {type(self.amount).__name__}")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError(f"not an ISO 4217 currency code: {self.currency!r}")

    def times(self, rate: Decimal) -> Money:
        return Money(self.amount * rate, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def rounded(self) -> Money:
        """Half-even to the currency's minor unit: done once, on a statement line."""
        exponent = Decimal(1).scaleb(-minor_units(self.currency))
        return Money(self.amount.quantize(exponent, rounding=ROUND_HALF_EVEN), self.currency)

    def as_json(self) -> dict[str, str]:
        return {"amount": str(self.amount), "currency": self.currency}


class MoneyAsDict(Transcoding):
    type = Money
    name = "money"

    def encode(self, obj: Any) -> dict[str, str]:
        assert isinstance(obj, Money)
        return obj.as_json()

    def decode(self, data: Any) -> Money:
        return Money(Decimal(data["amount"]), data["currency"])


class MoneyBody(BaseModel):
    """Money on the wire: the amount as a decimal string (or number), never a float inside."""

    amount: Decimal = Field(ge=0, max_digits=20, decimal_places=6, examples=["1000.00"])
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["USD"], description="ISO 4217 code")

    def to_money(self) -> Money:
        return Money(self.amount, self.currency)

    @classmethod
    def of(cls, money: Money) -> MoneyBody:
        return cls(amount=money.amount, currency=money.currency)


class Amount(BaseModel):
    """Money in an answer: may be negative (a clawback, a balance carried forward)."""

    amount: Decimal = Field(examples=["-600.00"])
    currency: str = Field(examples=["USD"])

    @classmethod
    def of(cls, money: Money) -> Amount:
        return cls(amount=money.amount, currency=money.currency)
