"""Exact money: a decimal amount with its ISO 4217 currency; never a float."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

import iso4217
from eventsourcing.persistence import Transcoding
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from shared.edge import RequestModel

# The currencies of ISO 4217's current list (the `iso4217` package, from the maintenance agency's
# table), with their minor units. A code is taken only if it has a minor unit: DOMAIN.md rounds
# every amount half-even to its currency's minor unit, and ISO gives none ("N.A.") to the codes
# that are no money a contract is priced in or a partner is paid in. So precious metals are
# refused (XAU, XAG, XPT, XPD: a troy ounce of a commodity; a tier measured through one would
# move with the metal's price), as are units of account (XDR, XSU, XUA, the bond-market units
# XBA to XBD), XTS (reserved for testing) and XXX ("no currency").
_MINOR_UNITS: dict[str, int] = {
    currency.code: currency.exponent
    for currency in iso4217.Currency
    if currency.exponent is not None
}
CURRENCIES = frozenset(_MINOR_UNITS)


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)  # two for a code recorded before codes were checked


def _iso_4217(code: str) -> str:
    if code not in CURRENCIES:
        raise PydanticCustomError(
            "currency_unknown",
            "{code} is not an ISO 4217 currency (one of the current list that has a minor unit)",
            {"code": code},
        )
    return code


Currency = Annotated[
    str,
    AfterValidator(_iso_4217),
    Field(
        pattern=r"^[A-Z]{3}$",
        json_schema_extra={"enum": sorted(CURRENCIES)},
        examples=["USD"],
        description="ISO 4217 code",
    ),
]
"""A currency a request may name."""


def _written_as(pattern: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, Decimal):  # built in code, not read from a request
            return value
        if not isinstance(value, str):
            raise PydanticCustomError(
                "decimal_as_text", 'an amount is written as text, e.g. "1000.00", never a number'
            )
        if not re.match(pattern, value):
            raise PydanticCustomError(
                "decimal_pattern",
                "'{value}' is not a decimal of the form {pattern}",
                {"value": value[:40], "pattern": pattern},
            )
        return value

    return check


def decimal_text(digits: int, places: int, *, positive: bool = False) -> Any:
    """A decimal a request writes as text, at most ``digits`` before the point and ``places``
    after: a JSON number would pass through a float on the way in."""
    whole = f"[1-9][0-9]{{0,{digits - 1}}}"
    fraction = f"([.][0-9]{{1,{places}}})?"
    pattern = (
        f"^({whole}{fraction}|0[.](?=[0-9]*[1-9])[0-9]{{1,{places}}})$"
        if positive
        else f"^(0|{whole}){fraction}$"
    )
    return Annotated[
        Decimal,
        BeforeValidator(_written_as(pattern)),
        Field(
            max_digits=digits + places,
            decimal_places=places,
            gt=0 if positive else None,
            ge=None if positive else 0,
        ),
        WithJsonSchema({"type": "string", "pattern": pattern}),
    ]


AmountText = decimal_text(14, 6)
"""An amount of money in a request (never negative)."""


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


class MoneyBody(RequestModel):
    """Money in a request: the amount as a decimal string (or number), never a float inside."""

    amount: AmountText = Field(examples=["1000.00"])  # type: ignore[valid-type]
    currency: Currency

    def to_money(self) -> Money:
        return Money(self.amount, self.currency)


class Amount(BaseModel):
    """Money in an answer, as recorded: may be negative (a clawback, a balance carried
    forward)."""

    amount: Decimal = Field(examples=["-600.00"])
    currency: str = Field(examples=["USD"])

    @classmethod
    def of(cls, money: Money) -> Amount:
        return cls(amount=money.amount, currency=money.currency)
