"""The program itself: its policy over time, and the exchange rates it publishes each month."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

import shared.contracts as published
from shared.contracts import publishes
from shared.money import Money
from shared.policy import PolicyVersion, PolicyVersions, ProgramPolicy


class PolicyChangeError(ValueError):
    """A policy change or a rate the program cannot take."""


class PolicyConflictError(PolicyChangeError):
    """A change that conflicts with the policy in force (a 409, not a 422)."""


def first_of_month(day: date) -> date:
    return day.replace(day=1)


@publishes(PolicyAdopted=published.PolicyAdopted)
class Program(Aggregate):
    """One per deployment. Version 1 is DOMAIN.md's policy, in force from the beginning."""

    @staticmethod
    def create_id() -> UUID:
        return uuid5(NAMESPACE_URL, "urn:dealreg:program")

    @event("Started")
    def __init__(self) -> None:
        self.policies = PolicyVersions()
        self.rates: dict[date, dict[str, Decimal]] = {}

    # --- policy ---------------------------------------------------------------------------
    def adopt(
        self, policy: ProgramPolicy, *, effective_on: date, today: date, by: str, note: str
    ) -> PolicyVersion:
        """A new version from a day on. Results already taken stand: it cannot start in the
        past, nor change the currency everything is counted in."""
        if effective_on < today:
            raise PolicyChangeError(
                f"a policy cannot take effect in the past ({effective_on} is before {today})"
            )
        current = self.policies.latest.policy
        if policy.reporting_currency != current.reporting_currency:
            raise PolicyChangeError(
                f"the reporting currency is {current.reporting_currency} and cannot change"
            )
        self.policy_adopted(
            version=self.policies.latest.version + 1,
            effective_on=effective_on,
            document=policy.model_dump(mode="json"),
            adopted_by=by,
            note=note,
        )
        return self.policies.latest

    @event("PolicyAdopted")
    def policy_adopted(
        self, version: int, effective_on: date, document: dict[str, Any], adopted_by: str, note: str
    ) -> None:
        self.policies.add(version, effective_on, document, adopted_by, note)

    @property
    def versions(self) -> list[PolicyVersion]:
        return self.policies.versions

    def version_on(self, day: date) -> PolicyVersion:
        return self.policies.version_on(day)

    def policy_on(self, day: date) -> ProgramPolicy:
        return self.policies.policy_on(day)

    def changes_between(self, after: date, until: date) -> list[PolicyVersion]:
        """Versions taking effect in (after, until]: the days the clock re-assesses everyone."""
        return self.policies.changes_between(after, until)

    # --- rates ----------------------------------------------------------------------------
    def publish_rates(self, *, month: date, rates: dict[str, Decimal], by: str) -> None:
        """What one unit of each currency is worth in the reporting currency, for a month."""
        reporting = self.policies.latest.policy.reporting_currency
        for currency, rate in rates.items():
            if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
                raise PolicyChangeError(f"{currency!r} is not an ISO 4217 currency code")
            if currency == reporting:
                raise PolicyConflictError(f"{reporting} is the reporting currency: its rate is 1")
            if not rate > 0:
                raise PolicyChangeError(f"the rate of {currency} must be positive, not {rate}")
        if not rates:
            raise PolicyChangeError("no rates given")
        self.rates_published(month=first_of_month(month), rates=rates, published_by=by)

    @event("RatesPublished")
    def rates_published(self, month: date, rates: dict[str, Decimal], published_by: str) -> None:
        self.rates[month] = {**self.rates.get(month, {}), **rates}

    def convert(self, money: Money, day: date) -> Decimal | None:
        """In the reporting currency, at the rate of the day's month (or the latest before)."""
        if money.currency == self.policy_on(day).reporting_currency:
            return money.amount
        month = first_of_month(day)
        published = [m for m, r in self.rates.items() if m <= month and money.currency in r]
        if not published:
            return None
        return money.amount * self.rates[max(published)][money.currency]
