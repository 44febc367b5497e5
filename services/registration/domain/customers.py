"""Who a customer is: its key, and how closely two customers resemble each other."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, cached_property, lru_cache
from hashlib import blake2b

import numpy as np
from numpy.typing import NDArray
from publicsuffixlist import PublicSuffixList
from rapidfuzz import fuzz, process

_LEGAL_SUFFIXES = frozenset(
    {
        "inc",
        "incorporated",
        "ltd",
        "limited",
        "llc",
        "llp",
        "plc",
        "gmbh",
        "ag",
        "sa",
        "sas",
        "sarl",
        "srl",
        "spa",
        "bv",
        "nv",
        "ab",
        "as",
        "oy",
        "kk",
        "corp",
        "corporation",
        "co",
        "company",
        "pty",
        "pte",
        "kg",
        "se",
        "lp",
    }
)

# Words too common in company names to say which company: kept for scoring, left out of the
# match keys, or every "... Holdings" would be a candidate for every other.
_GENERIC_WORDS = frozenset(
    (  # noqa: SIM905 (a list of words reads best as words)
        "and of the group holding holdings systems system technologies technology tech solutions"
        " services service international global partners industries enterprises consulting"
        " software networks communications bank capital management associates labs digital data"
        " cloud media health energy"
    ).split()
)

POSSIBLE_DUPLICATE = Decimal("0.85")
"""Resemblance from which two different customer keys are flagged as possibly one customer."""
_DIGITS = re.compile(r"\d+")


@cache
def _public_suffixes() -> PublicSuffixList:
    # The list ships inside the package: no network at run time.
    return PublicSuffixList()


def _host_of(domain_or_email: str) -> str:
    text = domain_or_email.strip().lower()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    text = text.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].rstrip(".")
    return text.encode("idna").decode("ascii") if text else ""


def registrable_domain(domain_or_email: str) -> str | None:
    """``www.acme.co.uk`` and ``bob@sales.acme.co.uk`` both give ``acme.co.uk``; IDNs come out
    in their ASCII (punycode) form, so ``bücher.de`` and ``xn--bcher-kva.de`` are one key."""
    try:
        host = _host_of(domain_or_email)
    except UnicodeError:
        return None
    if not host or "." not in host:
        return None
    registrable: str | None = _public_suffixes().privatesuffix(host)
    return registrable


def domain_label(registrable: str) -> str:
    """The part a company chose: ``acme`` of ``acme.co.uk``."""
    suffix: str | None = _public_suffixes().publicsuffix(registrable)
    label = registrable[: -len(suffix) - 1] if suffix else registrable
    if label.startswith("xn--"):
        try:
            return label.encode("ascii").decode("idna")
        except UnicodeError:
            return label
    return label


def normalized_name(legal_name: str) -> str:
    """Case-folded, accents and punctuation removed, legal suffixes dropped."""
    decomposed = unicodedata.normalize("NFKD", legal_name.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = re.sub(r"(?<=\b\w)\.(?=\w\b)", "", plain)  # S.A. -> SA, before punctuation goes
    words = re.sub(r"[^\w\s]", " ", plain.replace(".", "")).split()
    while len(words) > 1 and words[-1] in _LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


@dataclass(frozen=True)
class CustomerIdentity:
    """What a registration says about its customer, normalised."""

    name: str
    country: str
    domain: str | None

    @classmethod
    def of(
        cls, *, name: str, country: str, domain: str | None = None, email: str | None = None
    ) -> CustomerIdentity:
        registrable = None
        for source in (domain, email):
            if source and registrable is None:
                registrable = registrable_domain(source)
        return cls(name=normalized_name(name), country=country.upper(), domain=registrable)

    @cached_property
    def key(self) -> str:
        if self.domain:
            return f"domain:{self.domain}"
        return self.name_key

    @cached_property
    def name_key(self) -> str:
        return f"name:{self.name}|{self.country}"

    @cached_property
    def keys(self) -> tuple[str, ...]:
        """Every key the customer is known by (DOMAIN.md): its domain key, and its name and
        country key when its name says anything once normalised."""
        if self.domain and self.name:
            return (self.key, self.name_key)
        return (self.key,)

    @cached_property
    def label(self) -> str | None:
        return domain_label(self.domain) if self.domain else None

    @cached_property
    def numbers(self) -> tuple[str, ...]:
        """The runs of digits in the name: names with other numbers are other companies."""
        return tuple(_DIGITS.findall(self.name))

    @cached_property
    def squashed(self) -> str:
        """The name without its spaces, as a domain label would write it."""
        return self.name.replace(" ", "")


def customer_key(
    *, name: str, country: str, domain: str | None = None, email: str | None = None
) -> str:
    """The registrable domain of the web site or e-mail, else normalised name plus country."""
    return CustomerIdentity.of(name=name, country=country, domain=domain, email=email).key


@dataclass(frozen=True)
class Resemblance:
    score: Decimal
    """0 to 1: how closely the two customers resemble each other."""
    matched: tuple[str, ...]
    """Which keys matched: ``name``, ``domain``, ``name~domain``."""


def _score(ratio: float) -> Decimal:
    """A rapidfuzz score (0 to 100) as a resemblance: 0 to 1, to two places."""
    return (Decimal(str(ratio)) / 100).quantize(Decimal("0.01"))


def _ratio(a: str, b: str) -> Decimal:
    return _score(fuzz.ratio(a, b))


# A score below this (rapidfuzz's 0 to 100) is below POSSIBLE_DUPLICATE to two places, whatever
# the rounding: most pairs are, and are told so without building a Decimal.
_BELOW = 84.0
# MinHash over character trigrams, in bands: two strings whose trigram sets overlap enough share
# a band with high probability, so candidates come from an exact index lookup whatever the size
# of the table. 20 bands of 2 find ~99% of pairs one or two typos apart (tests/unit and bench/).
_BANDS, _ROWS = 20, 2
_MERSENNE = (1 << 61) - 1
_PERMUTATIONS = tuple(
    (
        int.from_bytes(blake2b(b"a%d" % i, digest_size=8).digest()) % (_MERSENNE - 1) + 1,
        int.from_bytes(blake2b(b"b%d" % i, digest_size=8).digest()) % _MERSENNE,
    )
    for i in range(_BANDS * _ROWS)
)
# Each key is (a * gram + b) mod 2**61 - 1 for every permutation and trigram at once, in 64-bit
# arrays: the operands are split into 31-bit halves so that no product overflows, and the
# Mersenne modulus folds the high bits back in (2**61 = 1). The same keys as exact integer
# arithmetic (tests/unit/test_customer_matching.py), about six times faster: a rebuild of the
# deals view computes them for every registration.
_M = np.uint64(_MERSENNE)
_A = np.array([a for a, _ in _PERMUTATIONS], dtype=np.uint64)[:, None]
_B = np.array([b for _, b in _PERMUTATIONS], dtype=np.uint64)[:, None]
_LOW30, _LOW31 = np.uint64((1 << 30) - 1), np.uint64((1 << 31) - 1)
_A_HIGH, _A_LOW = _A >> np.uint64(31), _A & _LOW31
_BAND_PREFIXES = tuple(band.to_bytes(1) for band in range(_BANDS))
_BAND_BYTES = _ROWS * 8


@lru_cache(maxsize=1 << 16)  # trigrams are few; hashing each anew was a third of the cost
def _trigram(gram: str) -> int:
    return int.from_bytes(blake2b(gram.encode(), digest_size=8).digest()) % _MERSENNE


def _fold(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """``x`` modulo 2**61 - 1, for ``x`` below 2**64."""
    x = (x & _M) + (x >> np.uint64(61))
    return np.where(x >= _M, x - _M, x)


def _band_keys(texts: Sequence[str]) -> set[int]:
    if not texts:
        return set()
    grams: list[int] = []
    starts: list[int] = []
    for text in texts:
        padded = f"^{text}$"
        starts.append(len(grams))
        grams.extend({_trigram(padded[i : i + 3]) for i in range(len(padded) - 2)})
    g = np.array(grams, dtype=np.uint64)
    g_high, g_low = g >> np.uint64(31), g & _LOW31
    middle = _A_HIGH * g_low + _A_LOW * g_high
    product = (
        ((_A_HIGH * g_high) << np.uint64(1))
        + (middle >> np.uint64(30))
        + ((middle & _LOW30) << np.uint64(31))
        + _A_LOW * g_low
    )
    hashed = _fold(_fold(product) + _B)
    minima = np.minimum.reduceat(hashed, starts, axis=1).T.astype(">u8").tobytes()
    keys = set()
    for position in range(len(texts)):
        for band, prefix in enumerate(_BAND_PREFIXES):
            start = (position * _BANDS + band) * _BAND_BYTES
            digest = blake2b(prefix + minima[start : start + _BAND_BYTES], digest_size=8).digest()
            keys.add(int.from_bytes(digest, signed=True))
    return keys


@lru_cache(maxsize=2048)  # the deals view keys what the request that registered it just did
def match_keys(identity: CustomerIdentity) -> frozenset[int]:
    """Keys shared, with high probability, by any two customers that `resemblance` may call
    possible duplicates: an index on them finds the candidates to score."""
    words = [word for word in identity.name.split() if word not in _GENERIC_WORDS]
    words = words or identity.name.split()
    texts = {"".join(words), "".join(sorted(words)), identity.label or ""}
    return frozenset(_band_keys([text for text in texts if len(text) >= 3]))


def resemblance(a: CustomerIdentity, b: CustomerIdentity) -> Resemblance | None:
    """How closely two customers with different keys resemble each other, if at all.

    Names count within one country; domains count whatever the country (``acme.com`` and
    ``acme.co.uk`` are probably one company; so are ``acme.com`` and ``acmee.com``).
    """
    if a.key == b.key:
        return None
    # Scores as rapidfuzz gives them (0 to 100), then as Decimals only for those that may reach
    # POSSIBLE_DUPLICATE: the same scores as ``_score`` of each, for a fraction of the cost.
    scores: dict[str, float] = {}
    if a.country == b.country and len(a.name) >= 3 and len(b.name) >= 3 and a.numbers == b.numbers:
        scores["name"] = fuzz.token_sort_ratio(a.name, b.name)
    a_label, b_label = a.label, b.label
    if a_label and b_label and min(len(a_label), len(b_label)) >= 4:
        scores["domain"] = 95.0 if a_label == b_label else fuzz.ratio(a_label, b_label)
    if a_label and b.name and len(a_label) >= 4:
        scores["name~domain"] = fuzz.ratio(a_label, b.squashed)
    if b_label and a.name and len(b_label) >= 4:
        scores["name~domain"] = max(scores.get("name~domain", 0.0), fuzz.ratio(b_label, a.squashed))
    if not any(score >= _BELOW for score in scores.values()):
        return None
    exact = {
        k: Decimal("0.95") if k == "domain" and a_label == b_label else _score(v)
        for k, v in scores.items()
        if v >= _BELOW
    }
    matched = tuple(sorted(k for k, v in exact.items() if v >= POSSIBLE_DUPLICATE))
    if not matched:
        return None
    return Resemblance(score=max(exact[k] for k in matched), matched=matched)


def resemblances(
    customer: CustomerIdentity, others: Sequence[CustomerIdentity]
) -> list[Resemblance | None]:
    """``resemblance`` of the customer to each of the others, the same answers for less: every
    score that could reach a flag is first computed for all of them in a few calls into
    rapidfuzz, and ``resemblance`` only scores those with one that does."""
    if not others:
        return []
    label, squashed = customer.label, customer.squashed
    best = process.cdist(
        [customer.name], [other.name for other in others], scorer=fuzz.token_sort_ratio
    )[0]
    if label:
        labels = [other.label or "" for other in others]
        best = np.maximum(best, process.cdist([label], labels, scorer=fuzz.ratio)[0])
        squashes = [other.squashed for other in others]
        best = np.maximum(best, process.cdist([label], squashes, scorer=fuzz.ratio)[0])
    if squashed:
        labels = [other.label or "" for other in others]
        best = np.maximum(best, process.cdist([squashed], labels, scorer=fuzz.ratio)[0])
    return [
        resemblance(customer, other) if score >= _BELOW else None
        for other, score in zip(others, best.tolist(), strict=True)
    ]
