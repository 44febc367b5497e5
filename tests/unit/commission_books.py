"""Commissions' rules over an in-memory log (the library's POPO persistence, through the same
transcoding as PostgreSQL): published events in, statements out, no database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import JSONTranscoder

from services.commissions.domain.contracts import Contract
from services.commissions.domain.rules import CommissionRules
from services.commissions.domain.statements import Line, Statement
from shared.codec import register_transcodings
from shared.contracts import (
    ContractCancelled,
    ContractRenewed,
    ContractSigned,
    PolicyAdopted,
    PublishedEvent,
    TierChanged,
)
from shared.money import Money


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


class MemoryLog(Application[UUID]):
    env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        register_transcodings(transcoder)

    def __init__(self) -> None:
        super().__init__()
        self.contracts: set[UUID] = set()
        self.statements: set[UUID] = set()

    def keep(self, aggregates: list[Aggregate]) -> None:
        for aggregate in aggregates:
            if isinstance(aggregate, Contract):
                self.contracts.add(aggregate.id)
            if isinstance(aggregate, Statement):
                self.statements.add(aggregate.id)
        self.save(*aggregates)

    # --- the Store port -----------------------------------------------------------------
    def find(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate

    def contracts_due(self, on: date) -> list[UUID]:
        due = []
        for contract_id in sorted(self.contracts):
            contract: Contract = self.repository.get(contract_id)
            next_due = contract.next_due()
            if next_due is not None and next_due <= on:
                due.append(contract_id)
        return due

    def statements_open(self, through: str) -> list[UUID]:
        found = [self.repository.get(s) for s in self.statements]
        return [
            s.id
            for s in sorted(found, key=lambda s: (s.partner_id, s.period))
            if s.issued is None and s.period <= through
        ]


class Books:
    """Drives the rules as the service does: one decision, one save."""

    def __init__(self) -> None:
        self.log = MemoryLog()
        self.position = 0

    def _next(self, log: str, occurred_at: datetime) -> dict[str, Any]:
        self.position += 1
        return {
            "log": log,
            "position": self.position,
            "stream_version": 1,
            "occurred_at": occurred_at,
        }

    def decide(self, event: PublishedEvent) -> None:
        rules = CommissionRules(self.log)
        rules.decide(event)
        self.log.keep(rules.changed())

    def run_clock(self, until: datetime) -> None:
        rules = CommissionRules(self.log)
        rules.run(until)
        self.log.keep(rules.changed())

    # --- what the other services publish ------------------------------------------------
    def tier(self, partner_id: UUID, tier: str, on: date, motion: str = "sell") -> None:
        self.decide(
            TierChanged(
                **self._next("tiering", at(on, 9)),
                partner_id=partner_id,
                motion=motion,
                previous_tier=None,
                tier=tier,
                effective_on=on,
                reason="test",
                metrics={},
            )
        )

    def adopt(self, version: int, effective_on: date, document: dict[str, Any]) -> None:
        self.decide(
            PolicyAdopted(
                **self._next("tiering", at(effective_on, 0)),
                program_id=uuid.uuid4(),
                version=version,
                effective_on=effective_on,
                document=document,
                adopted_by="admin",
                note="test",
            )
        )

    def sign(
        self,
        partner_id: UUID | None,
        customer_key: str,
        mrr: str,
        start: date,
        *,
        term_months: int = 12,
        currency: str = "USD",
        one_time: str | None = None,
        motion: str = "sell",
        poached: bool = False,
        reported: date | None = None,
        contract_id: UUID | None = None,
    ) -> UUID:
        contract_id = contract_id or uuid.uuid4()
        self.decide(
            ContractSigned(
                **self._next("registration", at(reported or start)),
                contract_id=contract_id,
                customer_key=customer_key,
                partner_id=partner_id,
                registration_id=None,
                start_date=start,
                term_months=term_months,
                end_date=start,
                mrr=Money(Decimal(mrr), currency),
                one_time=Money(Decimal(one_time), currency) if one_time else None,
                external_id=None,
                motion=motion,
                poached=poached,
            )
        )
        return contract_id

    def renew(self, contract_id: UUID, start: date, mrr: str, term_months: int = 12) -> None:
        contract: Contract = self.log.repository.get(contract_id)
        self.decide(
            ContractRenewed(
                **self._next("registration", at(start, 8)),
                contract_id=contract_id,
                customer_key=contract.customer_key,
                partner_id=contract.partner_id,
                term_months=term_months,
                start_date=start,
                end_date=start,
                mrr=Money(Decimal(mrr), contract.terms[0].mrr.currency),
                external_id=None,
            )
        )

    def cancel(self, contract_id: UUID, effective_on: date, reported: date | None = None) -> None:
        contract: Contract = self.log.repository.get(contract_id)
        self.decide(
            ContractCancelled(
                **self._next("registration", at(reported or effective_on, 15)),
                contract_id=contract_id,
                customer_key=contract.customer_key,
                partner_id=contract.partner_id,
                start_date=contract.start_date,
                effective_on=effective_on,
                reason="customer left",
            )
        )

    # --- what it shows ------------------------------------------------------------------
    def statement(self, partner_id: UUID, period: str) -> Statement:
        statement = self.log.find(Statement.create_id(partner_id, period))
        assert isinstance(statement, Statement), f"no statement for {period}"
        return statement

    def lines(self, partner_id: UUID, period: str) -> list[tuple[str, str]]:
        """(rule, amount) of each line of a statement, in order."""
        return [
            (line.rule, str(line.amount.amount))
            for line in self.statement(partner_id, period).lines
        ]

    def all_statements(self) -> dict[UUID, tuple[tuple[Line, ...], Any]]:
        found = [self.log.repository.get(s) for s in self.log.statements]
        return {s.id: (tuple(s.lines), s.issued) for s in found}
