"""Customer identity, table-driven: the same key, a possible duplicate, or different customers.

Each row: two customers as (name, country, domain or e-mail) and what dealreg must conclude.
"""

from __future__ import annotations

from decimal import Decimal
from hashlib import blake2b

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.registration.domain.customers import (
    CustomerIdentity,
    _band_keys,
    match_keys,
    resemblance,
)

SAME, DUPLICATE, DIFFERENT = "same key", "possible duplicate", "different"

Customer = tuple[str, str, str | None]

PAIRS: list[tuple[str, Customer, Customer, str]] = [
    # subdomains and web addresses
    ("www prefix", ("Acme", "US", "www.acme.com"), ("Acme", "US", "acme.com"), SAME),
    ("deep subdomain", ("Acme", "US", "eu.shop.acme.com"), ("Acme", "US", "acme.com"), SAME),
    ("url with path", ("Acme", "US", "https://acme.com/contact"), ("X", "US", "acme.com"), SAME),
    ("url with port", ("Acme", "US", "http://acme.com:8080"), ("Acme", "US", "acme.com"), SAME),
    ("upper case", ("Acme", "US", "ACME.COM"), ("Acme", "US", "acme.com"), SAME),
    ("trailing dot", ("Acme", "US", "acme.com."), ("Acme", "US", "acme.com"), SAME),
    # public suffixes with more than one label
    ("co.uk", ("Acme", "GB", "www.acme.co.uk"), ("Acme", "GB", "acme.co.uk"), SAME),
    ("co.uk subdomain", ("Acme", "GB", "sales.acme.co.uk"), ("A", "GB", "acme.co.uk"), SAME),
    ("com.au", ("Acme", "AU", "shop.acme.com.au"), ("Acme", "AU", "acme.com.au"), SAME),
    ("co.jp", ("Acme", "JP", "www.acme.co.jp"), ("Acme", "JP", "acme.co.jp"), SAME),
    (
        "two companies on co.uk",
        ("Acme", "GB", "acme.co.uk"),
        ("Zenith", "GB", "zenith.co.uk"),
        DIFFERENT,
    ),
    (
        "github pages are private",
        ("Acme", "US", "acme.github.io"),
        ("Beta", "US", "betacorp.github.io"),
        DIFFERENT,
    ),
    # e-mail addresses
    ("e-mail and site", ("Acme", "GB", "bob@sales.acme.co.uk"), ("Acme", "GB", "acme.co.uk"), SAME),
    ("two e-mails", ("Acme", "US", "ann@acme.com"), ("Acme", "US", "bob@mail.acme.com"), SAME),
    (
        "e-mail domains differ",
        ("Acme", "US", "ann@acme.com"),
        ("Acme", "US", "ann@gloop.com"),
        DUPLICATE,
    ),
    # international names and domains
    ("IDN and punycode", ("Bücher", "DE", "bücher.de"), ("Bücher", "DE", "xn--bcher-kva.de"), SAME),
    ("IDN subdomain", ("Bücher", "DE", "shop.bücher.de"), ("B", "DE", "bücher.de"), SAME),
    ("accents in names", ("Société Générale", "FR", None), ("Societe Generale", "FR", None), SAME),
    ("umlaut in names", ("Müller GmbH", "DE", None), ("Muller", "DE", None), SAME),
    ("cyrillic name", ("Газпром", "RU", None), ("ГАЗПРОМ", "RU", None), SAME),
    # legal suffixes
    (
        "Corp vs Corporation Ltd",
        ("Acme Corp", "US", None),
        ("ACME Corporation Ltd", "US", None),
        SAME,
    ),
    ("Inc.", ("Globex, Inc.", "US", None), ("Globex", "US", None), SAME),
    ("S.A.", ("Iberia S.A.", "ES", None), ("Iberia", "ES", None), SAME),
    ("GmbH & Co. KG", ("Bosch GmbH & Co. KG", "DE", None), ("Bosch", "DE", None), SAME),
    ("LLC", ("Initech LLC", "US", None), ("Initech", "US", None), SAME),
    ("same name, other country", ("Acme Ltd", "GB", None), ("Acme Inc", "US", None), DIFFERENT),
    # typos and near names
    ("typo in domain", ("Acme", "US", "acme.com"), ("Acme", "US", "acmee.com"), DUPLICATE),
    (
        "transposed letters",
        ("Northwind", "US", "northwind.com"),
        ("Northwind", "US", "nortwhind.com"),
        DUPLICATE,
    ),
    (
        "same label other suffix",
        ("Acme", "US", "acme.com"),
        ("Acme", "GB", "acme.co.uk"),
        DUPLICATE,
    ),
    (
        "typo in name",
        ("Northwind Traders", "US", None),
        ("Nortwind Traders", "US", None),
        DUPLICATE,
    ),
    ("word order", ("Traders Northwind", "US", None), ("Northwind Traders", "US", None), DUPLICATE),
    (
        "name without domain vs domain",
        ("Acme Ltd", "GB", None),
        ("Acme", "GB", "acme.co.uk"),
        DUPLICATE,
    ),
    (
        "hyphenated domain vs name",
        ("Blue Sky", "US", None),
        ("Blue Sky", "US", "bluesky.com"),
        DUPLICATE,
    ),
    ("punctuation only", ("A.C.M.E.", "US", None), ("ACME", "US", None), SAME),
    # clearly different companies
    ("different companies", ("Acme", "US", "acme.com"), ("Globex", "US", "globex.com"), DIFFERENT),
    ("short labels are not guessed", ("IBM", "US", "ibm.com"), ("IBN", "US", "ibn.com"), DIFFERENT),
    (
        "shared word only",
        ("Acme Logistics", "US", None),
        ("Zenith Logistics", "US", None),
        DIFFERENT,
    ),
    (
        "free mail provider is a domain",
        ("Ann", "US", "ann@gmail.com"),
        ("Bob", "US", "bob@yahoo.com"),
        DIFFERENT,
    ),
    (
        "similar prefix",
        ("Microsoft", "US", "microsoft.com"),
        ("Micron", "US", "micron.com"),
        DIFFERENT,
    ),
    ("different names no domain", ("Initech", "US", None), ("Hooli", "US", None), DIFFERENT),
    ("numbers matter", ("Studio 54", "US", None), ("Studio 45", "US", None), DIFFERENT),
]


def identity(customer: Customer) -> CustomerIdentity:
    name, country, where = customer
    if where and "@" in where:
        return CustomerIdentity.of(name=name, country=country, email=where)
    return CustomerIdentity.of(name=name, country=country, domain=where)


def conclude(a: CustomerIdentity, b: CustomerIdentity) -> str:
    if a.key == b.key:
        return SAME
    return DUPLICATE if resemblance(a, b) else DIFFERENT


def test_the_table_is_large_enough() -> None:
    assert len(PAIRS) >= 40


@pytest.mark.parametrize(("case", "first", "second", "expected"), PAIRS, ids=[p[0] for p in PAIRS])
def test_customer_matching(case: str, first: Customer, second: Customer, expected: str) -> None:
    a, b = identity(first), identity(second)
    assert conclude(a, b) == expected, (a, b, resemblance(a, b))
    assert conclude(b, a) == expected  # the relation is symmetric


def test_a_possible_duplicate_says_how_closely_and_on_what() -> None:
    match = resemblance(identity(("Acme", "US", "acme.com")), identity(("Acme", "US", "acmee.com")))
    assert match is not None
    assert "domain" in match.matched
    assert Decimal("0.85") <= match.score <= 1


@pytest.mark.parametrize(
    ("case", "first", "second"),
    [p[:3] for p in PAIRS if p[3] == DUPLICATE],
    ids=[p[0] for p in PAIRS if p[3] == DUPLICATE],
)
def test_possible_duplicates_share_a_match_key(
    case: str, first: Customer, second: Customer
) -> None:
    """The index finds what the scorer would flag: every duplicate pair has a key in common."""
    assert match_keys(identity(first)) & match_keys(identity(second))


def _reference_band_keys(text: str) -> set[int]:
    """The keys as first written, in exact integer arithmetic: stored keys must not change."""
    mersenne = (1 << 61) - 1
    permutations = [
        (
            int.from_bytes(blake2b(b"a%d" % i, digest_size=8).digest()) % (mersenne - 1) + 1,
            int.from_bytes(blake2b(b"b%d" % i, digest_size=8).digest()) % mersenne,
        )
        for i in range(40)
    ]
    padded = f"^{text}$"
    grams = {
        int.from_bytes(blake2b(padded[i : i + 3].encode(), digest_size=8).digest())
        for i in range(len(padded) - 2)
    }
    minima = [min((a * g + b) % mersenne for g in grams) for a, b in permutations]
    keys = set()
    for band in range(20):
        rows = b"".join(m.to_bytes(8) for m in minima[band * 2 : (band + 1) * 2])
        digest = blake2b(band.to_bytes(1) + rows, digest_size=8).digest()
        keys.add(int.from_bytes(digest, signed=True))
    return keys


@given(st.lists(st.text(min_size=3, max_size=60), min_size=1, max_size=3))
def test_match_keys_are_those_of_exact_integer_arithmetic(texts: list[str]) -> None:
    assert _band_keys(texts) == set().union(*(_reference_band_keys(t) for t in texts))
