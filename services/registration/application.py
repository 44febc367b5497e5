"""Registration's commands: load, let the aggregates decide, save in one transaction.

Reads that decide a command (the customer's claim) come from the log itself; reads that only
flag (possible duplicates, incumbency) come from projections through small ports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from services.registration.domain.contracts import Contract
from services.registration.domain.customers import CustomerIdentity, match_keys, resemblance
from services.registration.domain.direct import DirectDeal
from services.registration.domain.external_ids import ExternalId
from services.registration.domain.partners import KnownPartner
from services.registration.domain.registrations import (
    APPROVED,
    EXPIRED,
    Assessment,
    CustomerClaim,
    CustomerClaims,
    Flag,
    Incumbency,
    Registration,
    RegistrationRuleError,
    TransitionError,
)
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


class BatchIndex(Protocol):
    """The ``CustomerIndex``'s questions for the rows of a batch at once (a bulk import's)."""

    @property
    def budget(self) -> int:
        """How many registrations a candidate lookup reads through its rarest match keys."""
        ...

    @property
    def limit(self) -> int:
        """How many candidates a lookup returns at most."""
        ...

    def similar_customers(
        self, asked: Sequence[tuple[CustomerIdentity, str, frozenset[int]]]
    ) -> Sequence[Sequence[tuple[UUID, CustomerIdentity]]]:
        """``CustomerIndex.similar_customers`` for each (customer, product line, its match
        keys)."""
        ...

    def incumbents(self, customer_keys: Sequence[str], on: date) -> Mapping[str, Incumbency]:
        """``CustomerIndex.incumbent`` for each customer that has one."""
        ...


class Schedule(Protocol):
    def renewal_candidates(self, until: date) -> Sequence[UUID]: ...

    def registrations_to_age(self, now: datetime) -> Sequence[UUID]: ...


# --- errors the API turns into problems -----------------------------------------------------


class UnknownPartnerError(RegistrationRuleError):
    pass


class AlreadyRegisteredError(RegistrationRuleError):
    def __init__(self, registration_id: UUID | None) -> None:
        super().__init__(
            "this partner already holds the customer for this product line "
            f"(registration {registration_id})"
        )
        self.registration_id = registration_id


class ExternalIdTakenError(RegistrationRuleError):
    """The CRM id names a record already: the sender's own (``entity_id``, a repeat), or
    another partner's (``entity_id`` None: nothing of it is told, OWASP API1)."""

    def __init__(self, kind: str, external_id: str, entity_id: UUID | None) -> None:
        named = f"{kind} {entity_id}" if entity_id else f"a {kind} of another partner"
        super().__init__(f"the CRM id {external_id!r} already names {named}")
        self.kind = kind
        self.external_id = external_id
        self.entity_id = entity_id


class StillProtectedError(TransitionError):
    def __init__(self, until: date | None) -> None:
        super().__init__(
            "another partner's protection of this customer lasts until "
            f"{until.isoformat() if until else 'further notice'}; it cannot be approved before"
        )
        self.until = until


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    name: str
    country: str
    domain: str | None = None
    email: str | None = None

    @property
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
        return CustomerClaims.found(
            customer_keys, product_line, lambda claim_id: self._maybe(claim_id, CustomerClaim)
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
    def partner_for(self, partner_id: UUID, motion: str) -> KnownPartner:
        partner = self.partners.get(partner_id)
        if partner is None:
            raise UnknownPartnerError(f"partner {partner_id} is not enrolled in the program")
        if partner.may_register(motion):
            # An addendum signed a moment ago may not have reached the directory yet.
            partner = self.partners.get(partner_id, latest=True) or partner
        refusal = partner.may_register(motion)
        if refusal:
            raise RegistrationRuleError(refusal)
        return partner

    def assess(
        self,
        identity: CustomerIdentity,
        product_line: str,
        partner: KnownPartner,
        today: date,
        claim: CustomerClaim | None,
        itself: UUID | None = None,
    ) -> Assessment:
        return self.assessment(
            identity,
            partner,
            claim,
            self.customers.similar_customers(identity, product_line),
            self.customers.incumbent(identity.key, today),
            today,
            itself,
        )

    @staticmethod
    def assessment(
        identity: CustomerIdentity,
        partner: KnownPartner,
        claim: CustomerClaim | None,
        similar: Sequence[tuple[UUID, CustomerIdentity]],
        incumbency: Incumbency | None,
        today: date,
        itself: UUID | None = None,
    ) -> Assessment:
        """The assessment of a registration, given what the views say about its customer."""
        duplicates = []
        for registration_id, other in similar:
            match = resemblance(identity, other)
            if match is not None and registration_id != itself:
                duplicates.append(
                    Flag(
                        rule="possible-duplicate",
                        collides_with=f"registration:{registration_id}",
                        matched_keys=match.matched,
                        score=match.score,
                    )
                )
        if incumbency is not None and incumbency.partner_id == partner.partner_id:
            incumbency = None  # renewing one's own customer is no poaching
        holder = claim if claim and claim.held_by_other_than(partner.partner_id, today) else None
        return Assessment(
            holder=holder,
            duplicates=tuple(sorted(duplicates, key=lambda flag: flag.score or 0, reverse=True)),
            incumbency=incumbency,
            good_standing=partner.in_good_standing,
        )

    def register_deal(self, new: NewRegistration, now: datetime) -> Registration:
        partner = self.partner_for(new.partner_id, new.motion)
        identity = new.customer.identity

        def attempt() -> Registration:
            self._refuse_taken("registration", new.external_id, new.partner_id)
            claims = self.claims_of(identity.keys, new.product_line)
            own = claims.of_partner(new.partner_id, now.date())
            if own is not None:
                raise AlreadyRegisteredError(own.registration_id)
            holder = claims.held_by_other_than(new.partner_id, now.date())
            assessment = self.assess(identity, new.product_line, partner, now.date(), holder)
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
                assessment=assessment,
                now=now,
            )
            changed: list[Aggregate] = [registration]
            changed += self._external_id("registration", new.external_id, registration.id)
            if registration.status == APPROVED:
                changed += claims.protect(registration)
            if assessment.incumbency is not None:
                registration.note_poaching(assessment.incumbency)
            self.save(*changed)
            return registration

        return self._retrying(attempt)

    def resubmit(self, registration_id: UUID, changes: Changes, now: datetime) -> Registration:
        def attempt() -> Registration:
            registration = self.registration(registration_id)
            partner = self.partner_for(registration.partner_id, registration.motion)
            identity = changes.customer.identity
            claims = self.claims_of(identity.keys, changes.product_line)
            holder = claims.held_by_other_than(registration.partner_id, now.date())
            assessment = self.assess(
                identity, changes.product_line, partner, now.date(), holder, itself=registration.id
            )
            registration.resubmit(
                customer=identity,
                customer_name=changes.customer.name,
                customer_domain=changes.customer.domain,
                customer_email=changes.customer.email,
                product_line=changes.product_line,
                estimated_value=changes.estimated_value,
                expected_close=changes.expected_close,
                assessment=assessment,
                now=now,
            )
            changed: list[Aggregate] = [registration]
            if registration.status == APPROVED:
                changed += claims.protect(registration)
            if assessment.incumbency is not None:
                registration.note_poaching(assessment.incumbency)
            self.save(*changed)
            return registration

        return self._retrying(attempt)

    # --- review -------------------------------------------------------------------------
    def approve(self, registration_id: UUID, *, by: str, today: date) -> Registration:
        def attempt() -> Registration:
            registration = self.registration(registration_id)
            claims = self.claims_of(registration.customer_keys, registration.product_line)
            holder = claims.held_by_other_than(registration.partner_id, today)
            if holder is not None:
                raise StillProtectedError(holder.protected_until)
            registration.approve(by=by, today=today)
            self.save(registration, *claims.protect(registration))
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
            protecting = self.claims_of(identity.keys, new.product_line).protecting(today)
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


# --- bulk import ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowOutcome:
    line: int
    status: str
    """``recorded``, ``unchanged`` (its CRM id was already recorded) or ``rejected``."""
    entity_id: UUID | None = None
    registration_status: str | None = None
    problem: RegistrationRuleError | None = None


class ImportedCustomers:
    """The customers an import has recorded so far (open registrations all), by match key: what
    the deals view would hold for them had each row been a request of its own, answered as its
    candidate query would (rarest keys first, up to the probe budget; most shared keys first,
    up to the same limit)."""

    def __init__(self, budget: int = 200, limit: int = 50) -> None:
        self.budget = budget
        self.limit = limit
        self.entries: list[tuple[UUID, CustomerIdentity, str, frozenset[int]]] = []
        self.by_key: dict[int, list[int]] = {}

    def add(
        self,
        registration_id: UUID,
        identity: CustomerIdentity,
        product_line: str,
        keys: frozenset[int],
    ) -> None:
        index = len(self.entries)
        self.entries.append((registration_id, identity, product_line, keys))
        for key in keys:
            self.by_key.setdefault(key, []).append(index)

    def mark(self) -> int:
        return len(self.entries)

    def forget_since(self, mark: int) -> None:
        """Forget what was added after ``mark`` (a batch whose save failed)."""
        for _, _, _, keys in self.entries[mark:]:
            for key in keys:
                positions = self.by_key.get(key)
                if positions is None:  # emptied by an entry before this one
                    continue
                while positions and positions[-1] >= mark:
                    positions.pop()
                if not positions:
                    del self.by_key[key]
        del self.entries[mark:]

    def similar_customers(
        self, identity: CustomerIdentity, product_line: str, keys: frozenset[int]
    ) -> list[tuple[UUID, CustomerIdentity]]:
        by_key, entries = self.by_key, self.entries
        counted = sorted((len(positions), key) for key in keys if (positions := by_key.get(key)))
        probed: list[list[int]] = []
        before = 0
        for count, key in counted:
            if before >= self.budget:
                break
            probed.append(by_key[key])
            before += count
        own = identity.key
        # Most keys shared first, then by registration id: as plain tuples, sorted without a
        # Python call per comparison; the customer key is the one each identity keeps.
        ranked = []
        for index in set().union(*probed):
            registration_id, other, line, other_keys = entries[index]
            if line == product_line and other.key != own:
                ranked.append((-len(keys & other_keys), registration_id.int, index))
        ranked.sort()
        return [entries[index][:2] for _, _, index in ranked[: self.limit]]


class Importer:
    """Records many registrations or contracts, a batch per transaction.

    Every row goes through the same rules as a single request, decided as if the rows had been
    sent one after another: a row sees the claims, the CRM ids and the customers (for possible
    duplicates) of the rows before it in the file, though none of them is in the views yet.
    Rows name their CRM id, so a second run of the same file finds every id taken and records
    nothing. Should a concurrent writer make a batch's save fail, that batch is done again row
    by row.

    What a batch asks the views (similar customers, incumbents) it asks in one statement each
    (``import_lookups``); partners are read once an import.
    """

    BATCH = 500

    def __init__(self, app: RegistrationApplication, lookups: BatchIndex | None = None) -> None:
        self.app = app
        self.lookups = lookups
        self.partners: dict[UUID, KnownPartner | RegistrationRuleError] = {}
        self.imported = (
            ImportedCustomers(lookups.budget, lookups.limit) if lookups else ImportedCustomers()
        )

    def registrations(
        self, rows: Sequence[tuple[int, NewRegistration]], now: datetime
    ) -> list[RowOutcome]:
        outcomes: list[RowOutcome] = []
        for start in range(0, len(rows), self.BATCH):
            batch = rows[start : start + self.BATCH]
            mark = self.imported.mark()
            try:
                outcomes += self._registration_batch(batch, now)
            except IntegrityError:
                self.imported.forget_since(mark)
                for line, new in batch:
                    outcome = self._one(line, partial(self.app.register_deal, new, now))
                    outcomes.append(outcome)
                    if outcome.status == "recorded" and outcome.entity_id is not None:
                        identity = new.customer.identity
                        self.imported.add(
                            outcome.entity_id, identity, new.product_line, match_keys(identity)
                        )
        return outcomes

    def contracts(self, rows: Sequence[tuple[int, NewContract]], now: datetime) -> list[RowOutcome]:
        return [self._one(line, partial(self.app.sign_contract, new, now)) for line, new in rows]

    def _one(self, line: int, record: Callable[[], Aggregate]) -> RowOutcome:
        try:
            recorded = record()
        except ExternalIdTakenError as taken:
            if taken.entity_id is None:
                return RowOutcome(line, "rejected", problem=taken)
            return RowOutcome(line, "unchanged", taken.entity_id)
        except RegistrationRuleError as error:
            return RowOutcome(line, "rejected", problem=error)
        except AggregateNotFoundError:
            return RowOutcome(
                line, "rejected", problem=RegistrationRuleError("no such registration")
            )
        return RowOutcome(line, "recorded", recorded.id, getattr(recorded, "status", None))

    def _partner(self, partner_id: UUID, motion: str) -> KnownPartner | RegistrationRuleError:
        """The partner if it may register this motion, else why not (read once an import)."""
        if partner_id not in self.partners:
            try:
                self.partners[partner_id] = self.app.partner_for(partner_id, "refer")
            except RegistrationRuleError as error:
                self.partners[partner_id] = error
        partner = self.partners[partner_id]
        if isinstance(partner, RegistrationRuleError):
            return partner
        refusal = partner.may_register(motion)
        return RegistrationRuleError(refusal) if refusal else partner

    def _views(
        self, rows: Sequence[tuple[CustomerIdentity, str, frozenset[int]]], today: date
    ) -> tuple[list[Sequence[tuple[UUID, CustomerIdentity]]], list[Incumbency | None]]:
        """What the views say about each row's customer: similar customers, and incumbency."""
        if self.lookups is None:
            customers = self.app.customers
            return (
                [customers.similar_customers(identity, line) for identity, line, _ in rows],
                [customers.incumbent(identity.key, today) for identity, _, _ in rows],
            )
        similar = list(self.lookups.similar_customers(rows))
        incumbents = self.lookups.incumbents([identity.key for identity, _, _ in rows], today)
        return similar, [incumbents.get(identity.key) for identity, _, _ in rows]

    def _registration_batch(
        self, batch: Sequence[tuple[int, NewRegistration]], now: datetime
    ) -> list[RowOutcome]:
        app, today = self.app, now.date()
        identities = {line: new.customer.identity for line, new in batch}
        known = app.get_many(
            [
                ExternalId.create_id("registration", new.external_id)
                for _, new in batch
                if new.external_id
            ]
            + [
                CustomerClaim.create_id(key, new.product_line)
                for line, new in batch
                for key in identities[line].keys
            ]
        )
        # What each row's partner may do; what the views say of the customers of the rows that
        # may be recorded, asked for all of them at once.
        partners = {line: self._partner(new.partner_id, new.motion) for line, new in batch}
        asked = [
            (line, new)
            for line, new in batch
            if isinstance(partners[line], KnownPartner)
            and not (
                new.external_id and ExternalId.create_id("registration", new.external_id) in known
            )
        ]
        keys = {line: match_keys(identities[line]) for line, _ in asked}
        similar, incumbents = self._views(
            [(identities[line], new.product_line, keys[line]) for line, new in asked], today
        )
        views = {
            line: (found, incumbency)
            for (line, _), found, incumbency in zip(asked, similar, incumbents, strict=True)
        }
        taken_here: dict[str, int] = {}
        changed: dict[UUID, Aggregate] = {}
        outcomes = []
        for line, new in batch:
            if new.external_id:
                taken = known.get(ExternalId.create_id("registration", new.external_id))
                if isinstance(taken, ExternalId):
                    told = self.app.record_told(taken, new.partner_id)
                    if told is None:
                        error = ExternalIdTakenError("registration", new.external_id, None)
                        outcomes.append(RowOutcome(line, "rejected", problem=error))
                    else:
                        outcomes.append(RowOutcome(line, "unchanged", told))
                    continue
                if new.external_id in taken_here:
                    outcomes.append(
                        RowOutcome(
                            line,
                            "rejected",
                            problem=RegistrationRuleError(
                                f"the CRM id {new.external_id!r} is already on line "
                                f"{taken_here[new.external_id]}"
                            ),
                        )
                    )
                    continue
            partner = partners[line]
            if isinstance(partner, RegistrationRuleError):
                outcomes.append(RowOutcome(line, "rejected", problem=partner))
                continue
            identity = identities[line]
            claims = CustomerClaims.found(identity.keys, new.product_line, known.get)
            own = claims.of_partner(new.partner_id, today)
            if own is not None:
                outcomes.append(
                    RowOutcome(
                        line, "rejected", problem=AlreadyRegisteredError(own.registration_id)
                    )
                )
                continue
            # The views, and the rows this import recorded before this one as the deals view
            # would have them had each row been a request (none counted twice).
            in_views, incumbency = views[line]
            seen = {registration_id for registration_id, _ in in_views}
            earlier = [
                candidate
                for candidate in self.imported.similar_customers(
                    identity, new.product_line, keys[line]
                )
                if candidate[0] not in seen
            ]
            holder = claims.held_by_other_than(new.partner_id, today)
            assessment = app.assessment(
                identity, partner, holder, [*in_views, *earlier], incumbency, today
            )
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
                assessment=assessment,
                now=now,
            )
            changed[registration.id] = registration
            self.imported.add(registration.id, identity, new.product_line, keys[line])
            if new.external_id:
                taken_here[new.external_id] = line
                index = ExternalId(
                    kind="registration", external_id=new.external_id, entity_id=registration.id
                )
                changed[index.id] = index
            if registration.status == APPROVED:
                for claim in claims.protect(registration):
                    known[claim.id] = changed[claim.id] = claim
            if assessment.incumbency is not None:
                registration.note_poaching(assessment.incumbency)
            outcomes.append(RowOutcome(line, "recorded", registration.id, registration.status))
        app.save(*changed.values())
        return outcomes


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
