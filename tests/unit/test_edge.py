"""The checks at the edge, without a service: storable text, program dates, currencies, bounded
documents."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import Field, ValidationError

from shared.edge import (
    NESTING_LIMIT,
    TEXT_LIMIT,
    DocumentTooLargeError,
    RequestModel,
    parse_json,
    refuse_unbounded,
    unstorable,
)
from shared.money import CURRENCIES, MoneyBody, minor_units
from shared.policy import PolicyDocumentError, parse_policy
from shared.program_dates import FIRST_DAY, LAST_DAY, in_program


class Inner(RequestModel):
    name: str = Field(max_length=50)


class Body(RequestModel):
    inner: Inner | None = None
    tags: list[str] = []
    amounts: dict[str, Decimal] = {}
    free: str = ""
    on: date | None = None
    at: datetime | None = None


def locations(error: ValidationError) -> list[tuple[str | int, ...]]:
    return [e["loc"] for e in error.errors()]


@pytest.mark.parametrize("text", ["Acme", "Müller GmbH", "株式会社", "🦆 & co", "\ufffd", ""])
def test_text_postgresql_holds_passes(text: str) -> None:
    assert unstorable(text) is None
    assert Body(free=text).free == text


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "x\ud800", "\udfffy", "ok \U0001f986\udc00"])
def test_nul_and_lone_surrogates_are_named(text: str) -> None:
    assert unstorable(text)


def test_every_string_of_a_request_body_is_checked_where_it_is() -> None:
    with pytest.raises(ValidationError) as nested:
        Body.model_validate({"inner": {"name": "a\x00"}})
    assert locations(nested.value) == [("inner", "name")]
    with pytest.raises(ValidationError) as item:
        Body.model_validate({"tags": ["fine", "b\x00"]})
    assert locations(item.value) == [("tags",)]
    assert "item 1" in item.value.errors()[0]["msg"]
    with pytest.raises(ValidationError) as surrogate:  # pydantic itself refuses these
        Body.model_validate({"tags": ["fine", "b\ud800"]})
    assert locations(surrogate.value) == [("tags", 1)]
    with pytest.raises(ValidationError) as key:
        Body.model_validate({"amounts": {"\x00": "1"}})
    assert locations(key.value) == [("amounts",)]


def test_a_text_field_without_a_bound_of_its_own_takes_the_default_one() -> None:
    assert len(Body(free="x" * TEXT_LIMIT).free) == TEXT_LIMIT
    with pytest.raises(ValidationError):
        Body(free="x" * (TEXT_LIMIT + 1))
    with pytest.raises(ValidationError):
        Inner(name="x" * 51)  # a field's own bound wins


def test_dates_and_instants_lie_in_the_program() -> None:
    assert in_program(FIRST_DAY)
    assert in_program(LAST_DAY)
    assert Body(on=LAST_DAY, at=datetime(1900, 1, 1, tzinfo=UTC)).on == LAST_DAY
    for day in (date(1, 1, 1), date(1899, 12, 31), date(3000, 1, 1), date(9999, 12, 31)):
        with pytest.raises(ValidationError) as refused:
            Body(on=day)
        assert refused.value.errors()[0]["type"] == "date_outside_program"
    with pytest.raises(ValidationError):
        Body(at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC))


@pytest.mark.parametrize("code", ["USD", "EUR", "JPY", "CLF", "BHD", "CHE"])
def test_iso_4217_currencies_are_taken(code: str) -> None:
    assert MoneyBody(amount=Decimal(1), currency=code).currency == code


@pytest.mark.parametrize("code", ["ZZZ", "ABC", "QQQ", "XTS", "XXX", "XAU", "XAG", "XDR", "usd"])
def test_codes_that_are_no_currency_a_contract_is_priced_in_are_refused(code: str) -> None:
    with pytest.raises(ValidationError):
        MoneyBody(amount=Decimal(1), currency=code)


def test_minor_units_come_from_the_same_list() -> None:
    assert {minor_units(code) for code in ("USD", "EUR")} == {2}
    assert (minor_units("JPY"), minor_units("BHD"), minor_units("CLF")) == (0, 3, 4)
    assert minor_units("ZZZ") == 2  # a code recorded before codes were checked
    assert len(CURRENCIES) > 150


def test_json_nested_deeper_than_the_limit_is_refused_fast() -> None:
    assert parse_json("[" * NESTING_LIMIT + "]" * NESTING_LIMIT)
    for depth in (NESTING_LIMIT + 1, 500, 10_000, 1_000_000):
        started = time.monotonic()
        with pytest.raises(DocumentTooLargeError):
            parse_json("[" * depth + "]" * depth)
        assert time.monotonic() - started < 1


def test_a_yaml_alias_bomb_is_refused_before_it_is_validated() -> None:
    """Nine levels of ten aliases each: a billion values, were they expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    lines.append("tiers: {motions: {sell: {tiers: *a8}}}")
    started = time.monotonic()
    with pytest.raises(PolicyDocumentError, match="more than"):
        parse_policy("\n".join(lines))
    assert time.monotonic() - started < 2


def test_yaml_nested_deeper_than_the_limit_is_refused() -> None:
    for document in ("a: " + "[" * 10_000 + "]" * 10_000, "a:\n" + "- " * 10_000 + "x\n"):
        with pytest.raises(PolicyDocumentError, match="nested deeper"):
            parse_policy(document)


def test_a_document_within_the_limits_is_itself() -> None:
    document = {"a": [1, {"b": [2, 3]}]}
    assert refuse_unbounded(document) is document
