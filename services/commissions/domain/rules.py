"""DOMAIN.md's commission rules, applied to what the other services publish and to the passing of
time. Every decision changes aggregates of this service; nothing here reads the wall clock or
the database: a ``Store`` hands out the aggregates, and the changed ones are returned to save."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from services.commissions.domain.contracts import Contract, Earning, Paid
from services.commissions.domain.partners import Account, Customer
from services.commissions.domain.program import PartnerTiers, RateCard
from services.commissions.domain.statements import (
    Balance,
    Books,
    Line,
    Statement,
    StatementClosedError,
    line_id,
    next_period,
    period_of,
    previous_period,
)
from shared.contracts import (
    ContractCancelled,
    ContractRenewed,
    ContractSigned,
    PartnerEnrolled,
    PolicyAdopted,
    PublishedEvent,
    TierChanged,
)
from shared.money import Money
from shared.policy import CommissionPolicy

A = TypeVar("A", bound=Aggregate)

RESALE_MARGIN = "resale_margin"
POACHING_CAP = "poaching_cap"
NEW_BUSINESS_BONUS = "new_business_bonus"
REFERRAL_FEE = "referral_fee"
PREMIUM_ASSOCIATE = "premium_associate"
CLAWBACK = "clawback"
CANCELLATION_ADJUSTMENT = "cancellation_adjustment"
RULES = {
    RESALE_MARGIN: "margin by tier on recurring revenue, locked for the customer's life",
    POACHING_CAP: "margin on a contract won in another partner's renewal window, capped",
    NEW_BUSINESS_BONUS: "once, on first-year value, for a customer new to the vendor",
    REFERRAL_FEE: "once, on first-year value, for a won referral",
    PREMIUM_ASSOCIATE: "on recurring revenue, for an elected premium associate's referral",
    CLAWBACK: "reverses a one-time fee or bonus of a contract cancelled soon after its start",
    CANCELLATION_ADJUSTMENT: "reverses a month paid that a cancellation dated back ends",
}


class Store(Protocol):
    """The aggregates of commissions' log, and two questions the clock asks of its projections."""

    def find(self, aggregate_id: UUID) -> Aggregate | None: ...

    def contracts_due(self, on: date) -> Sequence[UUID]:
        """Contracts with a month begun by a day that has not earned yet."""
        ...

    def statements_open(self, through: str) -> Sequence[UUID]:
        """Statements not issued, for months up to one."""
        ...


def percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"


def _money(money: Money) -> str:
    return f"{money.amount} {money.currency}"


class CommissionRules:
    """One decision at a time: make one, then save ``changed()`` in one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: dict[UUID, Aggregate] = {}

    def changed(self) -> list[Aggregate]:
        return [a for a in self._seen.values() if a.pending_events]

    def _get(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        aggregate = self._seen.get(aggregate_id) or self.store.find(aggregate_id)
        if aggregate is None:
            return None
        if not isinstance(aggregate, kind):
            raise TypeError(f"{aggregate_id} is a {type(aggregate).__name__}, not {kind.__name__}")
        self._seen[aggregate_id] = aggregate
        return aggregate

    def _add(self, aggregate: A) -> A:
        self._seen[aggregate.id] = aggregate
        return aggregate

    def rate_card(self) -> RateCard:
        return self._get(RateCard.create_id(), RateCard) or self._add(RateCard())

    def account(self, partner_id: UUID) -> Account:
        return self._get(partner_id, Account) or self._add(Account(partner_id))

    def _books(self) -> Books:
        return self._get(Books.create_id(), Books) or self._add(Books())

    def _balance(self, partner_id: UUID) -> Balance:
        found = self._get(Balance.create_id(partner_id), Balance)
        return found or self._add(Balance(partner_id))

    def statement(self, partner_id: UUID, period: str) -> Statement:
        found = self._get(Statement.create_id(partner_id, period), Statement)
        return found or self._add(Statement(partner_id, period))

    def decide(self, event: PublishedEvent) -> None:
        """What an event another service published means for commissions."""
        if isinstance(event, ContractSigned):
            self.contract_signed(event)
        elif isinstance(event, ContractRenewed):
            self.contract_renewed(event)
        elif isinstance(event, ContractCancelled):
            self.contract_cancelled(event)
        elif isinstance(event, TierChanged):
            self.tier_changed(event)
        elif isinstance(event, PolicyAdopted):
            self.policy_adopted(event)
        elif isinstance(event, PartnerEnrolled):
            self.account(event.partner_id).enrol(
                function=event.function, category=event.category, caused_by=_ref(event)
            )

    # --- what tiering publishes ---------------------------------------------------------
    def policy_adopted(self, event: PolicyAdopted) -> None:
        self.rate_card().follow(
            version=event.version,
            effective_on=event.effective_on,
            document=event.document,
            adopted_by=event.adopted_by,
            note=event.note,
            caused_by=_ref(event),
        )

    def tier_changed(self, event: TierChanged) -> None:
        tiers = self._get(PartnerTiers.create_id(event.partner_id), PartnerTiers)
        tiers = tiers or self._add(PartnerTiers(event.partner_id))
        tiers.record(
            motion=event.motion,
            tier=event.tier,
            effective_on=event.effective_on,
            registration_position=event.registration_position or 0,
            caused_by=_ref(event),
        )

    # --- what registration publishes ----------------------------------------------------
    def contract_signed(self, event: ContractSigned) -> None:
        new_customer = self._get(Customer.create_id(event.customer_key), Customer) is None
        if new_customer:
            self._add(Customer(event.customer_key, event.contract_id, event.partner_id))
        if event.partner_id is None or self._get(event.contract_id, Contract) is not None:
            return  # the vendor's own contract earns no partner anything
        policy = self.rate_card().policy_on(event.won_on)
        rates = policy.commissions
        account = self.account(event.partner_id)
        motion = event.motion or "sell"
        if account.influencer:  # recorded (the vendor's revenue), but influencers earn nothing
            earning: Earning | None = None
            one_time: list[tuple[str, Decimal, str]] = []
        elif motion == "refer":
            earning, one_time = self._referral(event, account, rates)
        else:
            earning = self._resale(event, account, rates, entry_tier=policy.entry_tier("sell"))
            one_time = []
            if new_customer and not event.poached and rates.new_business_bonus:
                one_time.append(
                    (
                        NEW_BUSINESS_BONUS,
                        rates.new_business_bonus,
                        f"{percent(rates.new_business_bonus)} of first-year value "
                        f"{_money(event.first_year_value)}: {event.customer_key} had no earlier "
                        "contract with the vendor",
                    )
                )
        contract = self._add(
            Contract.open(
                contract_id=event.contract_id,
                partner_id=event.partner_id,
                customer_key=event.customer_key,
                motion=motion,
                start_date=event.start_date,
                term_months=event.term_months,
                mrr=event.mrr,
                caused_by=_ref(event),
                earning=earning,
            )
        )
        for rule, rate, explanation in one_time:
            self._pay(
                contract,
                cause=f"{rule}:{event.contract_id}",
                rule=rule,
                rate=rate,
                base=event.first_year_value,
                earned_in=period_of(event.won_on),
                explanation=explanation,
                caused_by=(_ref(event),),
            )

    def _resale(
        self, event: ContractSigned, account: Account, rates: CommissionPolicy, entry_tier: str
    ) -> Earning:
        assert event.partner_id is not None
        lock = account.locks.get(event.customer_key)
        if lock is None:
            tiers = self._get(PartnerTiers.create_id(event.partner_id), PartnerTiers)
            held = tiers.held_before("sell", event.position) if tiers else None
            tier = held.tier if held else entry_tier
            rate = rates.resale_margin.get(tier, rates.resale_margin.get(entry_tier, Decimal(0)))
            lock = account.lock_rate(
                customer_key=event.customer_key,
                rate=rate,
                tier=tier,
                contract_id=event.contract_id,
                on=event.won_on,
                caused_by=[_ref(event), *([held.caused_by] if held else [])],
            )
        locked = (
            f"{lock.tier} margin {percent(lock.rate)}, locked with {event.customer_key} "
            f"on {lock.locked_on.isoformat()} (contract {lock.contract_id})"
        )
        caused_by = tuple(dict.fromkeys((_ref(event), *lock.caused_by)))
        if event.poached and lock.rate > rates.poaching_cap:
            return Earning(
                POACHING_CAP,
                rates.poaching_cap,
                f"won in another partner's renewal window: {locked}, capped at "
                f"{percent(rates.poaching_cap)}",
                caused_by,
            )
        return Earning(RESALE_MARGIN, lock.rate, locked, caused_by)

    def _referral(
        self, event: ContractSigned, account: Account, rates: CommissionPolicy
    ) -> tuple[Earning | None, list[tuple[str, Decimal, str]]]:
        terms = rates.premium_associate
        earlier = account.won_referrals_within(event.won_on, terms.window_days)
        account.win_referral(contract_id=event.contract_id, on=event.won_on)
        election = account.elected_at(event.reported_at)
        if election is not None and earlier >= terms.qualifying_referrals:
            return (
                Earning(
                    PREMIUM_ASSOCIATE,
                    terms.rate,
                    f"premium associate (elected {election.elected_at.date().isoformat()}): "
                    f"referral {earlier + 1} won in {terms.window_days} days earns "
                    f"{percent(terms.rate)} of MRR every month instead of the referral fee",
                    (_ref(event),),
                ),
                [],
            )
        fee = (
            REFERRAL_FEE,
            rates.referral_fee,
            f"{percent(rates.referral_fee)} of first-year value "
            f"{_money(event.first_year_value)}, once, for the referral won",
        )
        return None, [fee]

    def contract_renewed(self, event: ContractRenewed) -> None:
        contract = self._get(event.contract_id, Contract)
        # A referral is won once: its renewals are the vendor's (as for the refer tier).
        if contract is not None and contract.motion != "refer":
            contract.renew(
                start_date=event.start_date,
                term_months=event.term_months,
                mrr=event.mrr,
                caused_by=_ref(event),
            )

    def contract_cancelled(self, event: ContractCancelled) -> None:
        contract = self._get(event.contract_id, Contract)
        if contract is None or not contract.cancel(
            effective_on=event.effective_on, caused_by=_ref(event)
        ):
            return
        if contract.motion == "refer":
            self.account(contract.partner_id).cancel_referral(
                contract_id=contract.id, on=event.effective_on
            )
        rates = self.rate_card().policy_on(event.effective_on).commissions
        days = (event.effective_on - contract.start_date).days
        earned_in = period_of(event.effective_on)
        if days <= rates.clawback_days:
            for paid in contract.one_time_lines():
                self._reverse(
                    contract,
                    paid,
                    rule=CLAWBACK,
                    earned_in=earned_in,
                    explanation=f"cancelled {days} days after its start (within "
                    f"{rates.clawback_days}): reverses the {paid.rule.replace('_', ' ')}",
                    caused_by=(_ref(event),),
                )
        for paid in contract.accruals_from(event.effective_on):
            assert paid.month_start is not None
            self._reverse(
                contract,
                paid,
                rule=CANCELLATION_ADJUSTMENT,
                earned_in=earned_in,
                explanation=f"the contract ended on {event.effective_on.isoformat()}: the month "
                f"from {paid.month_start.isoformat()} was paid and is not owed",
                caused_by=(_ref(event),),
            )

    # --- the passing of time ------------------------------------------------------------
    def run(self, until: datetime) -> None:
        """Months begun by an instant earn; months ended before it close."""
        today = until.date()
        for contract_id in self.store.contracts_due(today):
            contract = self._get(contract_id, Contract)
            if contract is None or contract.earning is None:
                continue
            earning = contract.earning
            for month_start, term in contract.due_months(today):
                caused_by = tuple(dict.fromkeys((term.caused_by, *earning.caused_by)))
                self._pay(
                    contract,
                    cause=f"month:{contract_id}:{month_start.isoformat()}",
                    rule=earning.rule,
                    rate=earning.rate,
                    base=term.mrr,
                    earned_in=period_of(month_start),
                    explanation=f"{percent(earning.rate)} of MRR {_money(term.mrr)} for the "
                    f"month from {month_start.isoformat()}: {earning.explanation}",
                    caused_by=caused_by,
                    month_start=month_start,
                )
        self._close_through(previous_period(period_of(today)))

    def _close_through(self, period: str) -> None:
        books = self._books()
        still_open = self.store.statements_open(period)
        closed = books.closed_through is not None and books.closed_through >= period
        if closed and not still_open:
            return
        books.close(period)
        open_statements = {
            s.id: s
            for s in (self._get(statement_id, Statement) for statement_id in still_open)
            if s is not None
        }
        for aggregate in list(self._seen.values()):
            if isinstance(aggregate, Statement) and aggregate.period <= period:
                open_statements[aggregate.id] = aggregate
        for statement in sorted(open_statements.values(), key=lambda s: (s.partner_id, s.period)):
            if statement.issued is not None:
                continue
            balance = self._balance(statement.partner_id)
            issue = statement.issue(carried_in=balance.carried)
            balance.carry(statement.period, issue.carried_out)

    # --- the partner's election ---------------------------------------------------------
    def elect_premium_associate(self, partner_id: UUID, *, at: datetime, by: str) -> Account:
        terms = self.rate_card().policy_on(at.date()).commissions.premium_associate
        account = self.account(partner_id)
        account.elect_premium_associate(at=at, by=by, terms=terms)
        return account

    def withdraw_premium_associate(self, partner_id: UUID, *, at: datetime, by: str) -> Account:
        account = self.account(partner_id)
        account.withdraw_premium_associate(at=at, by=by)
        return account

    # --- lines --------------------------------------------------------------------------
    def _pay(
        self,
        contract: Contract,
        *,
        cause: str,
        rule: str,
        rate: Decimal,
        base: Money,
        earned_in: str,
        explanation: str,
        caused_by: tuple[str, ...],
        month_start: date | None = None,
    ) -> None:
        line = Line(
            line_id=line_id(cause),
            rule=rule,
            rate=rate,
            base=base,
            amount=base.times(rate).rounded(),
            contract_id=contract.id,
            customer_key=contract.customer_key,
            earned_in=earned_in,
            explanation=explanation,
            caused_by=caused_by,
        )
        self._enter(contract.partner_id, line)
        contract.record_paid(
            Paid(line.line_id, rule, rate, base, line.amount, earned_in, month_start)
        )

    def _reverse(
        self,
        contract: Contract,
        paid: Paid,
        *,
        rule: str,
        earned_in: str,
        explanation: str,
        caused_by: tuple[str, ...],
    ) -> None:
        if paid.line_id in contract.reversed:
            return
        line = Line(
            line_id=line_id(f"{rule}:{paid.line_id}"),
            rule=rule,
            rate=paid.rate,
            base=paid.base,
            amount=-paid.amount,
            contract_id=contract.id,
            customer_key=contract.customer_key,
            earned_in=earned_in,
            explanation=explanation,
            caused_by=caused_by,
            corrects=paid.line_id,
        )
        self._enter(contract.partner_id, line)
        contract.reverse(paid.line_id, by=line.line_id)

    def _enter(self, partner_id: UUID, line: Line) -> None:
        """Into the statement of the month it was earned in, or the first one still open."""
        period = self._books().open_period_for(line.earned_in)
        while True:
            try:
                self.statement(partner_id, period).enter(line)
                return
            except StatementClosedError:
                period = next_period(period)


def _ref(event: Any) -> str:
    return f"{event.log}#{event.position}"
