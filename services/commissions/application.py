"""Commissions decides on the events it follows and records each decision in its own log,
together with the position of the event that caused it (one transaction: exactly once). Thin:
the rules live in ``domain.rules`` and the aggregates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.projection import EventSourcedProjection

from services.commissions.domain.partners import Account
from services.commissions.domain.program import RateCard
from services.commissions.domain.rules import CommissionRules
from services.commissions.domain.statements import Statement
from shared.contracts import (
    ContractCancelled,
    ContractRenewed,
    ContractSigned,
    PartnerEnrolled,
    PolicyAdopted,
    PublishedEvent,
    TierChanged,
)
from shared.database import Database
from shared.eventlog import ServiceApplication

FOLLOWS_REGISTRATION: list[type[PublishedEvent]] = [
    ContractSigned,
    ContractRenewed,
    ContractCancelled,
]
FOLLOWS_TIERING: list[type[PublishedEvent]] = [TierChanged, PolicyAdopted, PartnerEnrolled]
"""``PartnerEnrolled``: the partner's function (an influencer's contracts earn nothing)."""


class Schedule(Protocol):
    """What the clock asks of commissions' projections."""

    def contracts_due(self, on: date) -> Sequence[UUID]: ...

    def statements_open(self, through: str) -> Sequence[UUID]: ...


class _Store:
    def __init__(self, app: CommissionsApplication) -> None:
        self.app = app

    def find(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            aggregate: Aggregate = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate

    def contracts_due(self, on: date) -> Sequence[UUID]:
        return self.app.schedule.contracts_due(on)

    def statements_open(self, through: str) -> Sequence[UUID]:
        return self.app.schedule.statements_open(through)


class CommissionsApplication(ServiceApplication, EventSourcedProjection[UUID]):
    name = "commissions"

    def __init__(
        self,
        database: Database,
        *,
        schedule: Schedule,
        tiers_known: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(database)
        self.schedule = schedule
        self.tiers_known = tiers_known
        """Lets commissions catch up with tiering: a contract earns by the tier held when it
        was signed, so tiering's decisions up to then must be known."""

    def rules(self) -> CommissionRules:
        return CommissionRules(_Store(self))

    # --- reading ----------------------------------------------------------------------
    def rate_card(self) -> RateCard:
        try:
            return self.get(RateCard.create_id(), RateCard)
        except AggregateNotFoundError:
            return RateCard()

    def account(self, partner_id: UUID) -> Account | None:
        try:
            return self.get(partner_id, Account)
        except AggregateNotFoundError:
            return None

    def statement(
        self, partner_id: UUID, period: str, *, as_of: datetime | None = None
    ) -> Statement | None:
        """A statement now, or as recorded at an instant."""
        statement_id = Statement.create_id(partner_id, period)
        try:
            if as_of is not None:
                return self.get_as_of(statement_id, Statement, as_of)
            return self.get(statement_id, Statement)
        except AggregateNotFoundError:
            return None

    # --- the partner's election ---------------------------------------------------------
    def elect_premium_associate(self, partner_id: UUID, *, at: datetime, by: str) -> Account:
        return self._change_account(
            lambda rules: rules.elect_premium_associate(partner_id, at=at, by=by)
        )

    def withdraw_premium_associate(self, partner_id: UUID, *, at: datetime, by: str) -> Account:
        return self._change_account(
            lambda rules: rules.withdraw_premium_associate(partner_id, at=at, by=by)
        )

    def _change_account(self, change: Callable[[CommissionRules], Account]) -> Account:
        def attempt() -> Account:
            rules = self.rules()
            account = change(rules)
            self.save(*rules.changed())
            return account

        return self.retrying(attempt)

    # --- what registration and tiering publish ------------------------------------------
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        if isinstance(domain_event, ContractSigned):
            self.tiers_known()
        rules = self.rules()
        rules.decide(domain_event)
        processing_event.collect_events(*rules.changed())


class MonthlyRun:
    """Each month of a contract's terms earns as it begins; each month closes as it ends, and
    its statements are issued."""

    def __init__(self, app: CommissionsApplication) -> None:
        self.app = app

    def __call__(self, since: datetime | None, until: datetime) -> Sequence[Aggregate]:
        rules = self.app.rules()
        rules.run(until)
        return rules.changed()
