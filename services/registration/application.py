"""Registration's commands: gather the facts, let the domain decide, save in one transaction.

A submission is gathered (``EngagementFacts``), decided by the rules of engagement
(``domain.engagement.decide``) and saved with the claims it takes. Reads that decide (the
customer's claims) come from the log itself; reads that only flag (possible duplicates,
incumbency) come from projections through small ports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from services.registration.domain.claims import CustomerClaim, CustomerClaims
from services.registration.domain.contracts import Contract
from services.registration.domain.customers import CustomerIdentity
from services.registration.domain.direct import DirectDeal
from services.registration.domain.engagement import (
    EXPIRED,
    Decision,
    Facts,
    Incumbency,
    RegistrationRuleError,
    TransitionError,
    decide,
    direct_collision,
    may_approve,
)
from services.registration.domain.external_ids import ExternalId
from services.registration.domain.partners import KnownPartner
from services.registration.domain.registrations import Registration
from services.registration.domain.webhooks import Endpoint
from shared.database import Database
from shared.eventlog import ServiceApplication
from shared.money import Money

T = TypeVar("T")


# --- ports: what the application needs to know, implemented by projections -------------------


class PartnerDirectory(Protocol):
    def get(self, partner_id: UUID, *, latest: bool = False) -> KnownPartner | None:
        """A partner as tiering published it; ``latest`` waits until every change tiering
        has published so far is seen."""
        ...


class CustomerIndex(Protocol):
    def similar_customers(
        self, identity: CustomerIdentity, product_line: str
    ) -> Sequence[tuple[UUID, CustomerIdentity]]:
        """Open registrations of the product line whose customer looks like this one."""
        ...

    def incumbent(self, customer_key: str, on: date) -> Incumbency | None:
        """An active contract of the customer whose renewal window is open on a day."""
        ...


class EngagementFacts(Protocol):
    """What the rules of engagement ask about a submission (``engagement.Facts``). One
    implementation reads the log and the views for a request (``RequestFacts``); the importer's
    answers the rows of a batch from lookups made for the whole batch (``BatchFacts``)."""

    def partner(self, partner_id: UUID, motion: str) -> KnownPartner:
        """The partner as last known; ``UnknownPartnerError`` if it is not enrolled."""
        ...

    def claims(self, customer_keys: Sequence[str], product_line: str) -> CustomerClaims: ...

    def similar(
        self, identity: CustomerIdentity, product_line: str
    ) -> Sequence[tuple[UUID, CustomerIdentity]]: ...

    def incumbent(self, customer_key: str, on: date) -> Incumbency | None: ...


class Schedule(Protocol):
    def renewal_candidates(self, until: date) -> Sequence[UUID]: ...

    def registrations_to_age(self, now: datetime) -> Sequence[UUID]: ...


# --- errors the API turns into problems -----------------------------------------------------


class UnknownPartnerError(RegistrationRuleError):
    pass


class ExternalIdTakenError(RegistrationRuleError):
    """The CRM id names a record already: the sender's own (``entity_id``, a repeat), or
    another partner's (``entity_id`` None: nothing of it is told, OWASP API1)."""

    def __init__(self, kind: str, external_id: str, entity_id: UUID | None) -> None:
        named = f"{kind} {entity_id}" if entity_id else f"a {kind} of another partner"
        super().__init__(f"the CRM id {external_id!r} already names {named}")
        self.kind = kind
        self.external_id = external_id
        self.entity_id = entity_id


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    name: str
    country: str
    domain: str | None = None
    email: str | None = None

    @cached_property
    def identity(self) -> CustomerIdentity:
        return CustomerIdentity.of(
            name=self.name, country=self.country, domain=self.domain, email=self.email
        )


@dataclass(frozen=True)
class NewRegistration:
    partner_id: UUID
    customer: Customer
    product_line: str
    motion: str
    estimated_value: Money
    expected_close: date
    external_id: str | None = None


@dataclass(frozen=True)
class Changes:
    """What a partner edits before resubmitting a returned registration."""

    customer: Customer
    product_line: str
    estimated_value: Money
    expected_close: date


@dataclass(frozen=True)
class NewContract:
    customer: Customer | None
    partner_id: UUID | None
    registration_id: UUID | None
    start_date: date
    term_months: int
    mrr: Money
    one_time: Money | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class NewDirectDeal:
    customer: Customer
    product_line: str
    owner: str
    external_id: str | None = None


@dataclass(frozen=True)
class Submitted:
    """A registration decided, and everything its save records or rests on."""

    registration: Registration
    changed: list[Aggregate]
    unchanged: dict[UUID, int]
    """The claims it was decided on, as read: the save holds only if none has moved since."""
    claims: CustomerClaims


def gather(
    facts: EngagementFacts,
    partner_id: UUID,
    motion: str,
    identity: CustomerIdentity,
    product_line: str,
    now: datetime,
    itself: UUID | None = None,
) -> Facts:
    partner = facts.partner(partner_id, motion)
    return Facts(
        partner=partner,
        motion=motion,
        customer=identity,
        claims=facts.claims(identity.keys, product_line),
        similar=facts.similar(identity, product_line),
        incumbency=facts.incumbent(identity.key, now.date()),
        today=now.date(),
        itself=itself,
    )


def _with_claims(
    registration: Registration, decision: Decision, facts: Facts, changed: list[Aggregate]
) -> Submitted:
    """What a registration's save records with it: every claim of its customer when it is
    protected; the incumbent's notice. And what it rests on: the claims as read, when the
    decision needed nobody to hold them."""
    claims = facts.claims
    if decision.protects:
        assert registration.protected_until is not None
        changed += claims.protect(
            registration.id, registration.partner_id, registration.protected_until
        )
    if decision.poaching is not None:
        registration.note_poaching(decision.poaching)
    unchanged = claims.as_read() if decision.rests_on_unclaimed_keys else {}
    return Submitted(registration, changed, unchanged, claims)


_ATTEMPTS = 10


class RegistrationApplication(ServiceApplication):
    name = "registration"

    def __init__(
        self,
        database: Database,
        *,
        partners: PartnerDirectory,
        customers: CustomerIndex,
    ) -> None:
        super().__init__(database)
        self.partners = partners
        self.customers = customers
        self.facts: EngagementFacts = RequestFacts(self)

    # --- reading ----------------------------------------------------------------------
    def registration(self, registration_id: UUID, *, as_of: datetime | None = None) -> Registration:
        if as_of is not None:
            return self.get_as_of(registration_id, Registration, as_of)
        return self.get(registration_id, Registration)

    def contract(self, contract_id: UUID) -> Contract:
        return self.get(contract_id, Contract)

    def direct_deal(self, deal_id: UUID) -> DirectDeal:
        return self.get(deal_id, DirectDeal)

    def by_external_id(self, kind: str, external_id: str) -> UUID:
        return self.get(ExternalId.create_id(kind, external_id), ExternalId).entity_id

    def _maybe(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        try:
            return self.get(aggregate_id, kind)
        except AggregateNotFoundError:
            return None

    def claims_of(self, customer_keys: Sequence[str], product_line: str) -> CustomerClaims:
        """The claims on every key, read from the log in one statement."""
        ids = [CustomerClaim.create_id(key, product_line) for key in customer_keys]
        found = self.get_many(ids)
        return CustomerClaims.found(
            customer_keys,
            product_line,
            lambda claim_id: (
                claim if isinstance(claim := found.get(claim_id), CustomerClaim) else None
            ),
        )

    # --- webhook endpoints ------------------------------------------------------------------
    def endpoint(self, endpoint_id: UUID) -> Endpoint:
        return self.get(endpoint_id, Endpoint)

    def create_endpoint(
        self,
        *,
        url: str,
        event_types: list[str],
        partner_id: UUID | None,
        description: str,
        sealed_secret: str,
        by: str,
    ) -> Endpoint:
        endpoint = Endpoint.create(
            url=url,
            event_types=event_types,
            partner_id=partner_id,
            description=description,
            sealed_secret=sealed_secret,
            by=by,
        )
        self.save(endpoint)
        return endpoint

    def change_endpoint(self, endpoint_id: UUID, change: Callable[[Endpoint], None]) -> Endpoint:
        def attempt() -> Endpoint:
            endpoint = self.endpoint(endpoint_id)
            change(endpoint)
            self.save(endpoint)
            return endpoint

        return self.retrying(attempt)

    def _retrying(self, attempt: Callable[[], T]) -> T:
        # A racing writer makes our save fail on its unique (aggregate id, version); we load
        # again and decide again, now seeing what it recorded.
        for _ in range(_ATTEMPTS):
            try:
                return attempt()
            except IntegrityError:
                continue
        raise RegistrationRuleError("too many concurrent changes to this customer; retry shortly")

    @staticmethod
    def _external_id(kind: str, external_id: str | None, entity_id: UUID) -> list[Aggregate]:
        """The CRM id's index, saved with the record: two concurrent records with one id
        cannot both be saved (callers refuse a taken id first, with `_refuse_taken`)."""
        if external_id is None:
            return []
        return [ExternalId(kind=kind, external_id=external_id, entity_id=entity_id)]

    def _refuse_taken(
        self, kind: str, external_id: str | None, partner_id: UUID | None = None
    ) -> None:
        """A CRM id already recorded means the CRM is sending the same thing again: that answer
        comes before any rule, which would judge the repeat against its own first recording.
        Unless the record is another partner's: then the id is taken, and that is all."""
        if external_id is None:
            return
        taken = self._maybe(ExternalId.create_id(kind, external_id), ExternalId)
        if taken is not None:
            raise ExternalIdTakenError(kind, external_id, self.record_told(taken, partner_id))

    def record_told(self, taken: ExternalId, partner_id: UUID | None) -> UUID | None:
        """The record a taken CRM id names, if the partner sending it may know of it."""
        if partner_id is None:
            return taken.entity_id
        owner = getattr(self._maybe(taken.entity_id, Aggregate), "partner_id", None)
        return taken.entity_id if owner in (None, partner_id) else None

    # --- registering --------------------------------------------------------------------
    def submitted(self, new: NewRegistration, facts: EngagementFacts, now: datetime) -> Submitted:
        """A new registration as the rules decide it on the facts gathered; nothing saved."""
        identity = new.customer.identity
        gathered = gather(facts, new.partner_id, new.motion, identity, new.product_line, now)
        decision = decide(gathered)
        registration = Registration.submit(
            partner_id=new.partner_id,
            customer=identity,
            customer_name=new.customer.name,
            customer_domain=new.customer.domain,
            customer_email=new.customer.email,
            product_line=new.product_line,
            motion=new.motion,
            estimated_value=new.estimated_value,
            expected_close=new.expected_close,
            external_id=new.external_id,
            decision=decision,
            now=now,
        )
        changed: list[Aggregate] = [registration]
        changed += self._external_id("registration", new.external_id, registration.id)
        return _with_claims(registration, decision, gathered, changed)

    def register_deal(self, new: NewRegistration, now: datetime) -> Registration:
        def attempt() -> Registration:
            self._refuse_taken("registration", new.external_id, new.partner_id)
            submitted = self.submitted(new, self.facts, now)
            self.save(*submitted.changed, unchanged=submitted.unchanged)
            return submitted.registration

        return self._retrying(attempt)

    def resubmit(self, registration_id: UUID, changes: Changes, now: datetime) -> Registration:
        def attempt() -> Registration:
            registration = self.registration(registration_id)
            identity = changes.customer.identity
            gathered = gather(
                self.facts,
                registration.partner_id,
                registration.motion,
                identity,
                changes.product_line,
                now,
                itself=registration.id,
            )
            decision = decide(gathered)
            registration.resubmit(
                customer=identity,
                customer_name=changes.customer.name,
                customer_domain=changes.customer.domain,
                customer_email=changes.customer.email,
                product_line=changes.product_line,
                estimated_value=changes.estimated_value,
                expected_close=changes.expected_close,
                decision=decision,
                now=now,
            )
            submitted = _with_claims(registration, decision, gathered, [registration])
            self.save(*submitted.changed, unchanged=submitted.unchanged)
            return registration

        return self._retrying(attempt)

    # --- review -------------------------------------------------------------------------
    def approve(self, registration_id: UUID, *, by: str, today: date) -> Registration:
        def attempt() -> Registration:
            registration = self.registration(registration_id)
            claims = self.claims_of(registration.customer_keys, registration.product_line)
            may_approve(claims, registration.partner_id, today)
            registration.approve(by=by, today=today)
            assert registration.protected_until is not None
            taken = claims.protect(
                registration.id, registration.partner_id, registration.protected_until
            )
            self.save(registration, *taken)
            return registration

        return self._retrying(attempt)

    def reject(
        self, registration_id: UUID, *, by: str, reason_code: str, note: str
    ) -> Registration:
        registration = self.registration(registration_id)
        registration.reject(by=by, reason_code=reason_code, note=note)
        self.save(registration)
        return registration

    def return_for_information(self, registration_id: UUID, *, by: str, note: str) -> Registration:
        registration = self.registration(registration_id)
        registration.return_for_information(by=by, note=note)
        self.save(registration)
        return registration

    def request_extension(self, registration_id: UUID, *, by: str, note: str) -> Registration:
        registration = self.registration(registration_id)
        registration.request_extension(by=by, note=note)
        self.save(registration)
        return registration

    def approve_extension(self, registration_id: UUID, *, by: str) -> Registration:
        def attempt() -> Registration:
            registration = self.registration(registration_id)
            protected_until = registration.approve_extension(by=by)
            claims = self.claims_of(registration.customer_keys, registration.product_line)
            self.save(registration, *claims.extend(registration.id, protected_until))
            return registration

        return self._retrying(attempt)

    def decline_extension(self, registration_id: UUID, *, by: str, note: str) -> Registration:
        registration = self.registration(registration_id)
        registration.decline_extension(by=by, note=note)
        self.save(registration)
        return registration

    def _close(
        self, registration_id: UUID, close: Callable[[Registration], None], reason: str
    ) -> Registration:
        def attempt() -> Registration:
            registration = self.registration(registration_id)
            close(registration)
            claims = self.claims_of(registration.customer_keys, registration.product_line)
            self.save(registration, *claims.release(registration.id, reason))
            return registration

        return self._retrying(attempt)

    def withdraw(self, registration_id: UUID, *, by: str, on: date, reason: str) -> Registration:
        return self._close(
            registration_id, lambda r: r.withdraw(by=by, on=on, reason=reason), "withdrawn"
        )

    def mark_lost(self, registration_id: UUID, *, by: str, on: date, reason: str) -> Registration:
        return self._close(registration_id, lambda r: r.lose(by=by, on=on, reason=reason), "lost")

    # --- contracts and direct deals ------------------------------------------------------
    def sign_contract(self, new: NewContract, reported_at: datetime) -> Contract:
        """``reported_at``: the program's present when the CRM reports the contract."""

        def attempt() -> Contract:
            self._refuse_taken("contract", new.external_id)
            changed: list[Aggregate] = []
            registration = None
            partner_id, motion = new.partner_id, None
            if new.registration_id is not None:
                registration = self.registration(new.registration_id)
                if partner_id is not None and partner_id != registration.partner_id:
                    raise RegistrationRuleError(
                        "the contract's partner is not the partner of the registration it names"
                    )
                if not (registration.is_open or registration.status == EXPIRED):
                    raise TransitionError(
                        f"the registration is {registration.status}; it cannot be won"
                    )
                partner_id, motion = registration.partner_id, registration.motion
                key = registration.customer_key
                incumbent = registration.poaching_incumbent and self._incumbent_partner(
                    registration.poaching_incumbent
                )
            elif new.customer is not None:
                key = new.customer.identity.key
                found = self.customers.incumbent(key, new.start_date)
                incumbent = found.partner_id if found else None
            else:
                raise RegistrationRuleError("a contract names its customer or a registration")
            if partner_id is not None and self.partners.get(partner_id) is None:
                raise UnknownPartnerError(f"partner {partner_id} is not enrolled in the program")
            contract = Contract.sign(
                customer_key=key,
                partner_id=partner_id,
                registration_id=new.registration_id,
                motion=motion if partner_id else None,
                start_date=new.start_date,
                term_months=new.term_months,
                mrr=new.mrr,
                one_time=new.one_time,
                external_id=new.external_id,
                reported_at=reported_at,
                incumbent_partner_id=incumbent or None,
            )
            changed.append(contract)
            changed += self._external_id("contract", new.external_id, contract.id)
            if registration is not None:
                registration.win(contract_id=contract.id, on=new.start_date)
                changed.append(registration)
                claims = self.claims_of(registration.customer_keys, registration.product_line)
                changed += claims.release(registration.id, "won")
            self.save(*changed)
            return contract

        return self._retrying(attempt)

    def _incumbent_partner(self, contract_id: UUID) -> UUID | None:
        contract = self._maybe(contract_id, Contract)
        return contract.partner_id if contract else None

    def renew_contract(
        self,
        contract_id: UUID,
        *,
        term_months: int,
        mrr: Money | None,
        external_id: str | None,
        reported_at: datetime,
    ) -> Contract:
        contract = self.contract(contract_id)
        contract.renew(
            term_months=term_months, mrr=mrr, external_id=external_id, reported_at=reported_at
        )
        self.save(contract)
        return contract

    def cancel_contract(
        self, contract_id: UUID, *, effective_on: date, reason: str, reported_at: datetime
    ) -> Contract:
        contract = self.contract(contract_id)
        contract.cancel(effective_on=effective_on, reason=reason, reported_at=reported_at)
        self.save(contract)
        return contract

    def record_direct_deal(self, new: NewDirectDeal, today: date) -> DirectDeal:
        identity = new.customer.identity

        def attempt() -> DirectDeal:
            self._refuse_taken("direct_deal", new.external_id)
            protecting = direct_collision(self.claims_of(identity.keys, new.product_line), today)
            deal = DirectDeal(
                customer_key=identity.key,
                customer_name=new.customer.name,
                product_line=new.product_line,
                owner=new.owner,
                external_id=new.external_id,
                conflicts_with_registration=protecting.registration_id if protecting else None,
                protected_partner_id=protecting.partner_id if protecting else None,
            )
            changed: list[Aggregate] = [deal]
            changed += self._external_id("direct_deal", new.external_id, deal.id)
            if protecting is not None and protecting.registration_id is not None:
                registration = self.registration(protecting.registration_id)
                registration.note_direct_conflict(direct_deal_id=deal.id, owner=new.owner)
                changed.append(registration)
            self.save(*changed)
            return deal

        return self._retrying(attempt)


class RequestFacts:
    """The facts of one request's submission: the partner directory, the claims in the log, the
    deals and contracts views."""

    def __init__(self, app: RegistrationApplication) -> None:
        self.app = app

    def partner(self, partner_id: UUID, motion: str) -> KnownPartner:
        directory = self.app.partners
        partner = directory.get(partner_id)
        if partner is None:
            raise UnknownPartnerError(f"partner {partner_id} is not enrolled in the program")
        if partner.may_register(motion):
            # An addendum signed a moment ago may not have reached the directory yet.
            partner = directory.get(partner_id, latest=True) or partner
        return partner

    def claims(self, customer_keys: Sequence[str], product_line: str) -> CustomerClaims:
        return self.app.claims_of(customer_keys, product_line)

    def similar(
        self, identity: CustomerIdentity, product_line: str
    ) -> Sequence[tuple[UUID, CustomerIdentity]]:
        return self.app.customers.similar_customers(identity, product_line)

    def incumbent(self, customer_key: str, on: date) -> Incumbency | None:
        return self.app.customers.incumbent(customer_key, on)


# --- the clock's jobs ------------------------------------------------------------------------


class RenewalsFallDue:
    """Contracts whose renewal window opened raise ``RenewalDue``, once a term."""

    def __init__(self, app: RegistrationApplication, schedule: Schedule) -> None:
        self.app = app
        self.schedule = schedule

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        today = until.date()
        contracts = [self.app.contract(i) for i in self.schedule.renewal_candidates(today)]
        return [contract for contract in contracts if contract.note_time(today)]


class RegistrationsAge:
    """Protection expires (and the claim is released); reviews fall overdue."""

    def __init__(self, app: RegistrationApplication, schedule: Schedule) -> None:
        self.app = app
        self.schedule = schedule

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        changed: list[Aggregate] = []
        for registration_id in self.schedule.registrations_to_age(until):
            registration = self.app.registration(registration_id)
            outcome = registration.note_time(until)
            if outcome is None:
                continue
            changed.append(registration)
            if outcome == "expired":
                claims = self.app.claims_of(registration.customer_keys, registration.product_line)
                changed += claims.release(registration.id, "expired")
        return changed
