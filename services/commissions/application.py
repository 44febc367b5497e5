"""Commissions decides on the events it follows and records each decision in its own log,
together with the position of the event that caused it (one transaction: exactly once)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.projection import EventSourcedProjection

from services.commissions.domain import flat_rate_line
from shared.contracts import ContractSigned
from shared.eventlog import ServiceApplication


class CommissionsApplication(ServiceApplication, EventSourcedProjection[UUID]):
    name = "commissions"

    def __init__(self, database_url: str, *, flat_rate: Decimal, schema: str = "public") -> None:
        super().__init__(database_url, schema=schema)
        self.flat_rate = flat_rate

    def policy(self, domain_event: Any, processing_event: ProcessingEvent[UUID]) -> None:
        if isinstance(domain_event, ContractSigned) and domain_event.partner_id is not None:
            processing_event.collect_events(
                flat_rate_line(
                    partner_id=domain_event.partner_id,
                    contract_id=domain_event.contract_id,
                    customer_key=domain_event.customer_key,
                    period=domain_event.start_date.strftime("%Y-%m"),
                    mrr=domain_event.mrr,
                    rate=self.flat_rate,
                    caused_by=[f"{domain_event.log}#{domain_event.position}"],
                )
            )
