"""What commissions knows of the program, as tiering publishes it: the policy in force on each
day, and each partner's tiers over time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from shared.policy import PolicyVersions, ProgramPolicy

_RATE_CARD = uuid5(NAMESPACE_URL, "urn:dealreg:commissions:rate-card")
_TIERS = uuid5(NAMESPACE_URL, "urn:dealreg:commissions:partner-tiers")


class RateCard(Aggregate):
    """The policy versions tiering adopted; before any, DOMAIN.md's."""

    @staticmethod
    def create_id() -> UUID:
        return _RATE_CARD

    @event("Started")
    def __init__(self) -> None:
        self.policies = PolicyVersions()

    def follow(
        self,
        *,
        version: int,
        effective_on: date,
        document: dict[str, Any],
        adopted_by: str,
        note: str,
        caused_by: str,
    ) -> None:
        if any(known.version == version for known in self.policies.versions):
            return
        self.policy_followed(
            version=version,
            effective_on=effective_on,
            document=document,
            adopted_by=adopted_by,
            note=note,
            caused_by=caused_by,
        )

    @event("PolicyFollowed")
    def policy_followed(
        self,
        version: int,
        effective_on: date,
        document: dict[str, Any],
        adopted_by: str,
        note: str,
        caused_by: str,
    ) -> None:
        self.policies.add(version, effective_on, document, adopted_by, note)

    def policy_on(self, day: date) -> ProgramPolicy:
        return self.policies.policy_on(day)


@dataclass(frozen=True)
class HeldTier:
    tier: str
    effective_on: date | None
    registration_position: int
    """How far into registration's log tiering had read when it decided: the tier came after
    the contracts up to there and before any later one."""
    caused_by: str


class PartnerTiers(Aggregate):
    """A partner's tier per motion, as tiering decided it and when."""

    @staticmethod
    def create_id(partner_id: UUID) -> UUID:
        return uuid5(_TIERS, str(partner_id))

    @event("Started")
    def __init__(self, partner_id: UUID) -> None:
        self.partner_id = partner_id
        self.history: dict[str, list[HeldTier]] = {}

    def record(
        self,
        *,
        motion: str,
        tier: str,
        effective_on: date,
        registration_position: int,
        caused_by: str,
    ) -> None:
        self.tier_recorded(
            motion=motion,
            tier=tier,
            effective_on=effective_on,
            registration_position=registration_position,
            caused_by=caused_by,
        )

    @event("TierRecorded")
    def tier_recorded(
        self,
        motion: str,
        tier: str,
        caused_by: str,
        effective_on: date | None = None,
        registration_position: int = 0,
        since: datetime | None = None,
    ) -> None:
        # ``since`` (the instant tiering recorded it) is only in events recorded before the
        # tiers were ordered by registration's log (decision 16).
        self.history.setdefault(motion, []).append(
            HeldTier(tier, effective_on, registration_position, caused_by)
        )

    def held_before(self, motion: str, registration_position: int) -> HeldTier | None:
        """The tier held just before the contract at a position of registration's log: the
        last one tiering decided before it took that contract in (a promotion the contract
        itself brings comes after it; so does anything decided on a later contract)."""
        held = [
            h
            for h in self.history.get(motion, [])
            if h.registration_position < registration_position
        ]
        return held[-1] if held else None
