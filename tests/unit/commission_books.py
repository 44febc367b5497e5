"""Commissions' rules over in-memory books (``MemoryBooks``, the what-if's: the library's POPO
persistence, through the same transcoding as PostgreSQL): published events in, statements out,
no database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.commissions.domain.contracts import Contract
from services.commissions.domain.statements import Line, Statement
from services.commissions.whatif import Replay
from shared.contracts import (
    ContractCancelled,
    ContractRenewed,
    ContractSigned,
    PolicyAdopted,
    PublishedEvent,
    TierChanged,
)
from shared.money import Money
from shared.whatif import DraftPolicy


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


class Books:
    """Published events made to order, decided as the service decides them (one decision, one
    save: the what-if's ``Replay``)."""

    def __init__(self, draft: DraftPolicy | None = None) -> None:
        self.replay = Replay(draft)
        self.log = self.replay.books
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
        self.replay.decide(event)

    def run_clock(self, until: datetime) -> None:
        self.replay.run_clock(until)

    # --- what the other services publish ------------------------------------------------
    def tier(self, partner_id: UUID, tier: str, on: date, motion: str = "sell") -> None:
        decided_after = self.position  # every event so far, registration's included
        self.decide(
            TierChanged(
                **self._next("tiering", at(on, 9)),
                registration_position=decided_after,
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
                reported_at=at(reported or start),
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
                reported_at=at(start, 8),
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
                reported_at=at(reported or effective_on, 15),
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
        found: list[Statement] = [self.log.repository.get(s) for s in self.log.statements]
        return {s.id: (tuple(s.lines), s.issued) for s in found}
