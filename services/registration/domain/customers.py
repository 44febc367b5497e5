"""Who a customer is: its key, and how closely two customers resemble each other."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from publicsuffixlist import PublicSuffixList
from rapidfuzz import fuzz

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

POSSIBLE_DUPLICATE = Decimal("0.85")
"""Resemblance from which two different customer keys are flagged as possibly one customer."""


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

    @property
    def key(self) -> str:
        if self.domain:
            return f"domain:{self.domain}"
        return f"name:{self.name}|{self.country}"

    @property
    def label(self) -> str | None:
        return domain_label(self.domain) if self.domain else None


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


def _ratio(a: str, b: str) -> Decimal:
    return (Decimal(str(fuzz.ratio(a, b))) / 100).quantize(Decimal("0.01"))


def resemblance(a: CustomerIdentity, b: CustomerIdentity) -> Resemblance | None:
    """How closely two customers with different keys resemble each other, if at all.

    Names count within one country; domains count whatever the country (``acme.com`` and
    ``acme.co.uk`` are probably one company; so are ``acme.com`` and ``acmee.com``).
    """
    if a.key == b.key:
        return None
    scores: dict[str, Decimal] = {}
    if a.country == b.country and a.name and b.name:
        name_score = (Decimal(str(fuzz.token_sort_ratio(a.name, b.name))) / 100).quantize(
            Decimal("0.01")
        )
        same_numbers = re.findall(r"\d+", a.name) == re.findall(r"\d+", b.name)
        if len(a.name) >= 3 and len(b.name) >= 3 and same_numbers:
            scores["name"] = name_score
    if a.label and b.label and min(len(a.label), len(b.label)) >= 4:
        scores["domain"] = Decimal("0.95") if a.label == b.label else _ratio(a.label, b.label)
    for identity, other in ((a, b), (b, a)):
        if identity.label and other.name and len(identity.label) >= 4:
            squashed = other.name.replace(" ", "")
            scores["name~domain"] = max(
                scores.get("name~domain", Decimal(0)), _ratio(identity.label, squashed)
            )
    matched = tuple(sorted(k for k, v in scores.items() if v >= POSSIBLE_DUPLICATE))
    if not matched:
        return None
    return Resemblance(score=max(scores[k] for k in matched), matched=matched)
