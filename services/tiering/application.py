"""Tiering's commands: thin; the rules live in the Partner aggregate."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from services.tiering.domain.partners import Partner
from shared.eventlog import ServiceApplication


class TieringApplication(ServiceApplication):
    name = "tiering"

    def enrol_partner(
        self,
        *,
        legal_name: str,
        home_country: str,
        regions: list[str],
        motions: list[str],
        function: str,
        category: str,
        management: str,
        on: date,
    ) -> Partner:
        partner = Partner.enrol(
            legal_name=legal_name,
            home_country=home_country,
            regions=regions,
            motions=motions,
            function=function,
            category=category,
            management=management,
            on=on,
        )
        self.save(partner)
        return partner

    def partner(self, partner_id: UUID) -> Partner:
        return self.get(partner_id, Partner)
