"""The program's members as registration sees them (published by tiering)."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID


@dataclass(frozen=True)
class KnownPartner:
    partner_id: UUID
    legal_name: str
    motions: tuple[str, ...]
    function: str
    tiers: dict[str, str] = field(default_factory=dict)
    """The partner's tier in each motion, as tiering last published it."""
    offboarded: bool = False

    @property
    def in_good_standing(self) -> bool:
        """A member still, and not an influencer."""
        return self.function != "influencer" and not self.offboarded

    def may_register(self, motion: str) -> str | None:
        """Why this partner may not register a deal of this motion, or None if it may."""
        if self.offboarded:
            return "this partner has left the program"
        if self.function == "influencer":
            return "influencer partners cannot register deals"
        if motion == "sell" and "sell" not in self.motions:
            return "resale registrations need the `sell` addendum; this partner may refer"
        return None
