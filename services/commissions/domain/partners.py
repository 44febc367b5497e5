"""A partner's account with the program: the rate locked with each customer, the referrals it
won, its premium associate election; and the customers the vendor already has."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from shared.policy import PremiumAssociate

_CUSTOMER = uuid5(NAMESPACE_URL, "urn:dealreg:commissions:customer")


class ElectionError(ValueError):
    """A premium associate election the partner is not entitled to, or has not made."""


@dataclass(frozen=True)
class RateLock:
    """The margin a partner earns with a customer for the customer's life."""

    rate: Decimal
    tier: str
    contract_id: UUID
    locked_on: date
    caused_by: tuple[str, ...]


@dataclass(frozen=True)
class Election:
    elected_at: datetime
    by: str
    withdrawn_at: datetime | None = None


class Account(Aggregate):
    """One per partner, under the partner's id."""

    @staticmethod
    def create_id(partner_id: UUID) -> UUID:
        return partner_id

    @event("Opened")
    def __init__(self, partner_id: UUID) -> None:
        self.partner_id = partner_id
        self.locks: dict[str, RateLock] = {}
        self.referrals: dict[UUID, date] = {}
        self.referrals_cancelled: dict[UUID, date] = {}
        self.elections: list[Election] = []
        self.function: str | None = None
        self.category: str | None = None

    # --- membership -------------------------------------------------------------------
    @property
    def influencer(self) -> bool:
        """Influencers earn nothing (DOMAIN.md): their contracts are recorded, with no line."""
        return self.function == "influencer"

    def enrol(self, *, function: str, category: str, caused_by: str) -> None:
        """The partner's function and category, as tiering enrolled it (they never change)."""
        if self.function is None:
            self.enrolled(function=function, category=category, caused_by=caused_by)

    @event("Enrolled")
    def enrolled(self, function: str, category: str, caused_by: str) -> None:
        self.function = function
        self.category = category

    # --- resale margin ----------------------------------------------------------------
    def lock_rate(
        self,
        *,
        customer_key: str,
        rate: Decimal,
        tier: str,
        contract_id: UUID,
        on: date,
        caused_by: list[str],
    ) -> RateLock:
        if customer_key not in self.locks:
            self.rate_locked(
                customer_key=customer_key,
                rate=rate,
                tier=tier,
                contract_id=contract_id,
                locked_on=on,
                caused_by=caused_by,
            )
        return self.locks[customer_key]

    @event("RateLocked")
    def rate_locked(
        self,
        customer_key: str,
        rate: Decimal,
        tier: str,
        contract_id: UUID,
        locked_on: date,
        caused_by: list[str],
    ) -> None:
        self.locks[customer_key] = RateLock(rate, tier, contract_id, locked_on, tuple(caused_by))

    # --- referrals --------------------------------------------------------------------
    def won_referrals_within(self, day: date, window_days: int) -> int:
        """Referrals won in the trailing window up to a day (inclusive); a cancelled one no
        longer counts from the day its cancellation takes effect."""
        earliest = day - timedelta(days=window_days - 1)
        return sum(
            1
            for contract_id, won_on in self.referrals.items()
            if earliest <= won_on <= day
            and day < self.referrals_cancelled.get(contract_id, date.max)
        )

    def cancel_referral(self, *, contract_id: UUID, on: date) -> None:
        if contract_id in self.referrals and contract_id not in self.referrals_cancelled:
            self.referral_cancelled(contract_id=contract_id, on=on)

    @event("ReferralCancelled")
    def referral_cancelled(self, contract_id: UUID, on: date) -> None:
        self.referrals_cancelled[contract_id] = on

    def win_referral(self, *, contract_id: UUID, on: date) -> None:
        if contract_id not in self.referrals:
            self.referral_won(contract_id=contract_id, won_on=on)

    @event("ReferralWon")
    def referral_won(self, contract_id: UUID, won_on: date) -> None:
        self.referrals[contract_id] = won_on

    # --- premium associate ------------------------------------------------------------
    def elected_at(self, instant: datetime) -> Election | None:
        """The election in force at an instant, if any."""
        for election in reversed(self.elections):
            if election.elected_at <= instant:
                in_force = election.withdrawn_at is None or election.withdrawn_at > instant
                return election if in_force else None
        return None

    def elect_premium_associate(self, *, at: datetime, by: str, terms: PremiumAssociate) -> None:
        if self.elected_at(at) is not None:
            raise ElectionError("the partner has already elected premium associate")
        won = self.won_referrals_within(at.date(), terms.window_days)
        if won < terms.qualifying_referrals:
            raise ElectionError(
                f"premium associate needs {terms.qualifying_referrals} won referrals in the "
                f"trailing {terms.window_days} days; the partner has {won}"
            )
        self.premium_associate_elected(elected_at=at, by=by, won_referrals=won)

    @event("PremiumAssociateElected")
    def premium_associate_elected(self, elected_at: datetime, by: str, won_referrals: int) -> None:
        self.elections.append(Election(elected_at, by))

    def withdraw_premium_associate(self, *, at: datetime, by: str) -> None:
        if self.elected_at(at) is None:
            raise ElectionError("the partner has not elected premium associate")
        self.premium_associate_withdrawn(withdrawn_at=at, by=by)

    @event("PremiumAssociateWithdrawn")
    def premium_associate_withdrawn(self, withdrawn_at: datetime, by: str) -> None:
        current = self.elections[-1]
        self.elections[-1] = Election(current.elected_at, current.by, withdrawn_at)


class Customer(Aggregate):
    """A customer of the vendor, from its first contract (through a partner or direct): whoever
    signs it later brings no new business."""

    @staticmethod
    def create_id(customer_key: str) -> UUID:
        return uuid5(_CUSTOMER, customer_key)

    @event("FirstContracted")
    def __init__(self, customer_key: str, contract_id: UUID, partner_id: UUID | None) -> None:
        self.customer_key = customer_key
        self.first_contract_id = contract_id
        self.first_partner_id = partner_id
