"""Registration's commands: load, decide in the aggregates, save in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from services.registration.domain import (
    PROTECTION,
    Contract,
    CustomerClaim,
    KnownPartner,
    Registration,
    RegistrationRuleError,
    customer_key,
)
from shared.eventlog import ServiceApplication
from shared.money import Money


class PartnerDirectory(Protocol):
    """The program's members as tiering publishes them."""

    def get(self, partner_id: UUID) -> KnownPartner | None: ...


class ContractSchedule(Protocol):
    def renewal_candidates(self, until: date) -> Sequence[UUID]: ...


class UnknownPartnerError(RegistrationRuleError):
    pass


class AlreadyRegisteredError(RegistrationRuleError):
    def __init__(self, registration_id: UUID) -> None:
        super().__init__(
            f"this partner already holds the customer for this product line "
            f"(registration {registration_id})"
        )
        self.registration_id = registration_id


@dataclass(frozen=True)
class Customer:
    name: str
    country: str
    domain: str | None = None
    email: str | None = None

    @property
    def key(self) -> str:
        return customer_key(
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
class NewContract:
    customer: Customer | None
    partner_id: UUID | None
    registration_id: UUID | None
    start_date: date
    term_months: int
    mrr: Money
    one_time: Money | None = None
    external_id: str | None = None


class RegistrationApplication(ServiceApplication):
    name = "registration"

    def __init__(
        self,
        database_url: str,
        *,
        partners: PartnerDirectory,
        schema: str = "public",
    ) -> None:
        super().__init__(database_url, schema=schema)
        self.partners = partners

    # --- registrations ------------------------------------------------------------------
    def register_deal(self, new: NewRegistration, today: date) -> Registration:
        partner = self.partners.get(new.partner_id)
        if partner is None:
            raise UnknownPartnerError(f"partner {new.partner_id} is not enrolled in the program")
        if partner.function == "influencer":
            raise RegistrationRuleError("influencer partners cannot register deals")
        if new.motion == "sell" and "sell" not in partner.motions:
            raise RegistrationRuleError(
                "resale registrations need the `sell` addendum; this partner may refer"
            )
        key = new.customer.key
        # Racing registrations for one customer key all try to create or move the claim; the
        # store lets exactly one through, and the others retry and find it held.
        for _ in range(10):
            try:
                return self._register(new, key, today)
            except IntegrityError:
                continue
        raise RegistrationRuleError("the customer's claim is too contended; retry shortly")

    def _register(self, new: NewRegistration, key: str, today: date) -> Registration:
        claim = self._claim(key, new.product_line)
        holder = claim if claim is not None and claim.protects_on(today) else None
        if holder is not None and holder.partner_id == new.partner_id:
            raise AlreadyRegisteredError(holder.registration_id)
        protected_until = None if holder else today + PROTECTION
        registration = Registration.record(
            new.partner_id,
            key,
            new.customer.name,
            new.customer.domain,
            new.customer.country,
            new.product_line,
            new.motion,
            new.estimated_value,
            new.expected_close,
            new.external_id,
            protected_until=protected_until,
            conflict_with=holder.registration_id if holder else None,
            may_register_again_on=holder.protected_until + timedelta(days=1) if holder else None,
        )
        if protected_until is None:
            self.save(registration)
        elif claim is None:
            self.save(
                registration,
                CustomerClaim(
                    customer_key=key,
                    product_line=new.product_line,
                    registration_id=registration.id,
                    partner_id=new.partner_id,
                    protected_until=protected_until,
                ),
            )
        else:
            claim.reclaimed(registration.id, new.partner_id, protected_until)
            self.save(registration, claim)
        return registration

    def _claim(self, key: str, product_line: str) -> CustomerClaim | None:
        try:
            claim: CustomerClaim = self.repository.get(CustomerClaim.create_id(key, product_line))
        except AggregateNotFoundError:
            return None
        return claim

    def registration(self, registration_id: UUID) -> Registration:
        return self.get(registration_id, Registration)

    # --- contracts ------------------------------------------------------------------------
    def sign_contract(self, new: NewContract) -> Contract:
        partner_id = new.partner_id
        if new.registration_id is not None:
            registration = self.registration(new.registration_id)
            if partner_id is not None and partner_id != registration.partner_id:
                raise RegistrationRuleError(
                    "the contract's partner is not the partner of the registration it names"
                )
            partner_id = registration.partner_id
            key = registration.customer_key
        elif new.customer is not None:
            key = new.customer.key
        else:
            raise RegistrationRuleError("a contract names its customer or a registration")
        if partner_id is not None and self.partners.get(partner_id) is None:
            raise UnknownPartnerError(f"partner {partner_id} is not enrolled in the program")
        contract = Contract.sign(
            customer_key=key,
            partner_id=partner_id,
            registration_id=new.registration_id,
            start_date=new.start_date,
            term_months=new.term_months,
            mrr=new.mrr,
            one_time=new.one_time,
            external_id=new.external_id,
        )
        self.save(contract)
        return contract

    def contract(self, contract_id: UUID) -> Contract:
        return self.get(contract_id, Contract)


class RenewalsFallDue:
    """Clock job: contracts whose renewal window opened raise ``RenewalDue``, once a term."""

    def __init__(self, app: RegistrationApplication, schedule: ContractSchedule) -> None:
        self.app = app
        self.schedule = schedule

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        today = until.date()
        contracts = [self.app.contract(i) for i in self.schedule.renewal_candidates(today)]
        return [contract for contract in contracts if contract.note_time(today)]
