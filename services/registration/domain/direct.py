"""The vendor's own direct-sales deals, which may collide with a partner's protection."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event


class DirectDeal(Aggregate):
    """Recorded as it is; a partner's protection of the same customer stands (rule 8)."""

    @event("Recorded")
    def __init__(
        self,
        customer_key: str,
        customer_name: str,
        product_line: str,
        owner: str,
        external_id: str | None,
        conflicts_with_registration: UUID | None,
        protected_partner_id: UUID | None,
    ) -> None:
        self.customer_key = customer_key
        self.customer_name = customer_name
        self.product_line = product_line
        self.owner = owner
        self.external_id = external_id
        self.conflicts_with_registration = conflicts_with_registration
        self.protected_partner_id = protected_partner_id

    @property
    def status(self) -> str:
        return "channel_conflict" if self.conflicts_with_registration else "recorded"
