"""Rules of engagement: who may claim a customer, and the contracts that follow."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from uuid import NAMESPACE_URL, UUID, uuid5

from dateutil.relativedelta import relativedelta
from eventsourcing.domain import Aggregate, event
from publicsuffixlist import PublicSuffixList

import shared.contracts as published
from shared.contracts import publishes
from shared.money import Money

PROTECTION = timedelta(days=90)
RENEWAL_WINDOW = timedelta(days=90)

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
    }
)
_KEY_NAMESPACE = uuid5(NAMESPACE_URL, "urn:dealreg:customer-claim")


@dataclass(frozen=True)
class KnownPartner:
    """A member of the program as tiering publishes it."""

    partner_id: UUID
    legal_name: str
    motions: tuple[str, ...]
    function: str


class RegistrationRuleError(ValueError):
    """A registration that breaks a rule of engagement; nothing is recorded."""


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
    """``www.acme.co.uk`` and ``bob@sales.acme.co.uk`` both give ``acme.co.uk``."""
    try:
        host = _host_of(domain_or_email)
    except UnicodeError:
        return None
    if not host or "." not in host:
        return None
    registrable: str | None = _public_suffixes().privatesuffix(host)
    return registrable


def normalized_name(legal_name: str) -> str:
    """Case-folded, accents and punctuation removed, legal suffixes dropped."""
    decomposed = unicodedata.normalize("NFKD", legal_name.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = re.sub(r"[^\w\s]", " ", plain.replace(".", "")).split()
    while len(words) > 1 and words[-1] in _LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


def customer_key(
    *, name: str, country: str, domain: str | None = None, email: str | None = None
) -> str:
    for source in (domain, email):
        if source:
            registrable = registrable_domain(source)
            if registrable:
                return f"domain:{registrable}"
    return f"name:{normalized_name(name)}|{country.upper()}"


@publishes(Registered=published.DealRegistered)
class Registration(Aggregate):
    class Registered(Aggregate.Created):
        partner_id: UUID
        customer_key: str
        customer_name: str
        customer_domain: str | None
        country: str
        product_line: str
        motion: str
        estimated_value: Money
        expected_close: date
        external_id: str | None
        status: str
        protected_until: date | None
        conflict_with: UUID | None
        may_register_again_on: date | None

    @event(Registered)
    def __init__(
        self,
        partner_id: UUID,
        customer_key: str,
        customer_name: str,
        customer_domain: str | None,
        country: str,
        product_line: str,
        motion: str,
        estimated_value: Money,
        expected_close: date,
        external_id: str | None,
        status: str,
        protected_until: date | None,
        conflict_with: UUID | None,
        may_register_again_on: date | None,
    ) -> None:
        self.partner_id = partner_id
        self.customer_key = customer_key
        self.customer_name = customer_name
        self.customer_domain = customer_domain
        self.country = country
        self.product_line = product_line
        self.motion = motion
        self.estimated_value = estimated_value
        self.expected_close = expected_close
        self.external_id = external_id
        self.status = status
        self.protected_until = protected_until
        self.conflict_with = conflict_with
        self.may_register_again_on = may_register_again_on

    @classmethod
    def record(
        cls,
        partner_id: UUID,
        customer_key: str,
        customer_name: str,
        customer_domain: str | None,
        country: str,
        product_line: str,
        motion: str,
        estimated_value: Money,
        expected_close: date,
        external_id: str | None,
        *,
        protected_until: date | None = None,
        conflict_with: UUID | None = None,
        may_register_again_on: date | None = None,
    ) -> Registration:
        """Approved and protected until a date, or in conflict with the registration that
        holds the customer."""
        return cls(
            partner_id=partner_id,
            customer_key=customer_key,
            customer_name=customer_name,
            customer_domain=customer_domain,
            country=country,
            product_line=product_line,
            motion=motion,
            estimated_value=estimated_value,
            expected_close=expected_close,
            external_id=external_id,
            status="conflict" if conflict_with else "approved",
            protected_until=protected_until,
            conflict_with=conflict_with,
            may_register_again_on=may_register_again_on,
        )


class CustomerClaim(Aggregate):
    """Who holds a customer key for a product line; its deterministic id makes the first
    registration win when several race (one insert succeeds, the others retry)."""

    @staticmethod
    def create_id(customer_key: str, product_line: str, **_: object) -> UUID:
        return uuid5(_KEY_NAMESPACE, f"{customer_key}|{product_line.casefold()}")

    @event("Claimed")
    def __init__(
        self,
        customer_key: str,
        product_line: str,
        registration_id: UUID,
        partner_id: UUID,
        protected_until: date,
    ) -> None:
        self.customer_key = customer_key
        self.product_line = product_line
        self.registration_id = registration_id
        self.partner_id = partner_id
        self.protected_until = protected_until

    def protects_on(self, day: date) -> bool:
        return day <= self.protected_until

    @event("Reclaimed")
    def reclaimed(self, registration_id: UUID, partner_id: UUID, protected_until: date) -> None:
        self.registration_id = registration_id
        self.partner_id = partner_id
        self.protected_until = protected_until


def contract_end(start: date, term_months: int) -> date:
    """The last day of a term: a 12-month term from 2026-01-01 ends on 2026-12-31."""
    return start + relativedelta(months=term_months) - timedelta(days=1)


@publishes(Signed=published.ContractSigned, RenewalDueRaised=published.RenewalDue)
class Contract(Aggregate):
    class Signed(Aggregate.Created):
        customer_key: str
        partner_id: UUID | None
        registration_id: UUID | None
        start_date: date
        term_months: int
        end_date: date
        mrr: Money
        one_time: Money | None
        external_id: str | None

    class RenewalDueRaised(Aggregate.Event):
        customer_key: str
        partner_id: UUID | None
        end_date: date
        due_on: date

    @event(Signed)
    def __init__(
        self,
        customer_key: str,
        partner_id: UUID | None,
        registration_id: UUID | None,
        start_date: date,
        term_months: int,
        end_date: date,
        mrr: Money,
        one_time: Money | None,
        external_id: str | None,
    ) -> None:
        self.customer_key = customer_key
        self.partner_id = partner_id
        self.registration_id = registration_id
        self.start_date = start_date
        self.term_months = term_months
        self.end_date = end_date
        self.mrr = mrr
        self.one_time = one_time
        self.external_id = external_id
        self.renewal_due_for: date | None = None

    @classmethod
    def sign(
        cls,
        *,
        customer_key: str,
        partner_id: UUID | None,
        registration_id: UUID | None,
        start_date: date,
        term_months: int,
        mrr: Money,
        one_time: Money | None,
        external_id: str | None,
    ) -> Contract:
        if term_months < 1:
            raise RegistrationRuleError("a contract's term is at least one month")
        if one_time is not None and one_time.currency != mrr.currency:
            raise RegistrationRuleError("the one-time amount must be in the contract's currency")
        return cls(
            customer_key=customer_key,
            partner_id=partner_id,
            registration_id=registration_id,
            start_date=start_date,
            term_months=term_months,
            end_date=contract_end(start_date, term_months),
            mrr=mrr,
            one_time=one_time,
            external_id=external_id,
        )

    @property
    def renewal_due_on(self) -> date:
        return self.end_date - RENEWAL_WINDOW

    def note_time(self, today: date) -> bool:
        """Raise ``RenewalDue`` once per term, from 90 days before the end; True if raised."""
        if self.renewal_due_for == self.end_date or today < self.renewal_due_on:
            return False
        self.renewal_due_raised(
            customer_key=self.customer_key,
            partner_id=self.partner_id,
            end_date=self.end_date,
            due_on=self.renewal_due_on,
        )
        return True

    @event(RenewalDueRaised)
    def renewal_due_raised(
        self, customer_key: str, partner_id: UUID | None, end_date: date, due_on: date
    ) -> None:
        self.renewal_due_for = end_date
