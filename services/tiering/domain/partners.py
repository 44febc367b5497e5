"""Partners of the program: membership and tier per motion."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from eventsourcing.domain import Aggregate, event

import shared.contracts as published
from shared.contracts import publishes

ADDENDUM_MOTIONS = ("sell", "manage", "service", "build")
"""Motions that need an addendum to the main agreement; every partner may also `refer`."""

CATEGORIES_BY_FUNCTION: dict[str, frozenset[str]] = {
    "solution": frozenset(
        {"isv_ihv", "platform", "system_integrator", "oem", "interoperability", "msp_cmsp"}
    ),
    "sales": frozenset(
        {"solution_reseller", "value_added_distributor", "cloud_reseller", "sales_agent"}
    ),
    "service": frozenset(
        {
            "authorized_service",
            "business_services",
            "3pl",
            "financing",
            "professional_services",
            "training_certification",
            "epc",
            "consulting_deployment",
        }
    ),
    "influencer": frozenset(
        {
            "government",
            "standards_body",
            "developer_community",
            "open_source_community",
            "academia",
            "industry_analyst",
        }
    ),
}

MANAGEMENT_STRUCTURES = frozenset(
    {"formal_program", "formal_support", "one_on_one", "sla", "marketing_pr"}
)

ENTRY_TIER = {
    "sell": "registered",
    "manage": "registered",
    "service": "registered",
    "build": "registered",
    "refer": "associate",
}


class MembershipError(ValueError):
    """A membership request that breaks the program's rules."""


@publishes(Enrolled=published.PartnerEnrolled, TierChanged=published.TierChanged)
class Partner(Aggregate):
    class Enrolled(Aggregate.Created):
        legal_name: str
        home_country: str
        regions: list[str]
        motions: list[str]
        function: str
        category: str
        management: str

    class TierChanged(Aggregate.Event):
        motion: str
        previous_tier: str | None
        tier: str
        effective_on: date
        reason: str
        metrics: dict[str, Decimal]

    @event(Enrolled)
    def __init__(
        self,
        legal_name: str,
        home_country: str,
        regions: list[str],
        motions: list[str],
        function: str,
        category: str,
        management: str,
    ) -> None:
        self.legal_name = legal_name
        self.home_country = home_country
        self.regions = regions
        self.motions = motions
        self.function = function
        self.category = category
        self.management = management
        self.tiers: dict[str, str] = {}

    @classmethod
    def enrol(
        cls,
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
        """Sign the main agreement (and the addenda named), entering each motion's first tier."""
        if function not in CATEGORIES_BY_FUNCTION:
            raise MembershipError(
                f"unknown function {function!r}; one of {sorted(CATEGORIES_BY_FUNCTION)}"
            )
        if category not in CATEGORIES_BY_FUNCTION[function]:
            raise MembershipError(
                f"category {category!r} is not of function {function!r}; one of "
                f"{sorted(CATEGORIES_BY_FUNCTION[function])}"
            )
        if management not in MANAGEMENT_STRUCTURES:
            raise MembershipError(
                f"unknown management structure {management!r}; one of "
                f"{sorted(MANAGEMENT_STRUCTURES)}"
            )
        unknown = sorted(set(motions) - set(ADDENDUM_MOTIONS))
        if unknown:
            raise MembershipError(
                f"no addendum exists for {unknown}; addenda are {list(ADDENDUM_MOTIONS)} "
                "(every partner may refer without one)"
            )
        ordered_motions = [m for m in ADDENDUM_MOTIONS if m in motions]
        partner = cls(
            legal_name=legal_name,
            home_country=home_country,
            regions=sorted(set(regions)),
            motions=ordered_motions,
            function=function,
            category=category,
            management=management,
        )
        for motion in ["refer", *ordered_motions]:
            partner.tier_changed(
                motion=motion,
                previous_tier=None,
                tier=ENTRY_TIER[motion],
                effective_on=on,
                reason="enrolled",
                metrics={},
            )
        return partner

    @event(TierChanged)
    def tier_changed(
        self,
        motion: str,
        previous_tier: str | None,
        tier: str,
        effective_on: date,
        reason: str,
        metrics: dict[str, Decimal],
    ) -> None:
        self.tiers[motion] = tier
