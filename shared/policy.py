"""The program's policy as data: tier thresholds and windows, commission rates; versioned and
validated.

A policy document is YAML or JSON. DOMAIN.md's numbers are the default document
(`default-policy.yaml` beside this file); a program admin adopts a new version at tiering with an
effective date, tiering publishes it (`PolicyAdopted`), and every result, a tier or a commission,
is computed under the version in force at its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.edge import NESTING_LIMIT, DocumentTooLargeError, parse_json, refuse_unbounded
from shared.money import Currency

Motion = Literal["sell", "refer", "service", "manage", "build"]
MOTIONS: tuple[Motion, ...] = ("sell", "refer", "service", "manage", "build")

METRICS: dict[Motion, dict[str, str]] = {
    "sell": {
        "first_year_value": "booked first-year contract value, trailing window, reporting currency",
        "approved_registrations": "registrations approved in the trailing window",
        "regions": "regions the partner operates in",
    },
    "refer": {"won_referrals": "referrals won in the trailing window"},
    "service": {
        "certifications": "individuals holding a current certification",
        "projects": "projects completed successfully in the trailing window",
        "services_training": "highest services training level reached (101, 201, 301)",
    },
    "manage": {"managed_mrr": "monthly recurring revenue under management, reporting currency"},
    "build": {
        "integrations": "certified integrations",
        "joint_customers": "joint customers",
    },
}
"""What each motion's tiers may be measured by, with what each metric means."""

Minimums = dict[str, Annotated[Decimal, Field(ge=0)]]

MAX_WINDOW_DAYS = 3660
"""Ten years: the longest window (and clawback period) a policy may set; a window reaches back
from a program day, which must stay a representable date (``shared.program_dates``)."""


class TierRule(BaseModel):
    """A tier, and the ways to reach it: any one alternative, with every metric at its minimum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    any_of: list[Minimums] = Field(
        default=[], description="Alternatives; empty for the motion's entry tier"
    )


class MotionTiers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: list[TierRule] = Field(min_length=1, description="From the entry tier upwards")


class TierPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: int = Field(
        default=365, ge=1, le=MAX_WINDOW_DAYS, description="The trailing window of metrics"
    )
    demotion_grace_quarters: int = Field(
        default=1,
        ge=0,
        le=MAX_WINDOW_DAYS // 90,
        description="Full quarters below a threshold before a review demotes",
    )
    motions: dict[Motion, MotionTiers]

    @model_validator(mode="after")
    def _coherent(self) -> TierPolicy:
        for motion, rules in self.motions.items():
            entry, *higher = rules.tiers
            if entry.any_of:
                raise ValueError(f"{motion}: the entry tier {entry.name!r} takes no requirements")
            names = [rule.name for rule in rules.tiers]
            if len(set(names)) != len(names):
                raise ValueError(f"{motion}: tier names repeat: {names}")
            for rule in higher:
                if not rule.any_of or any(not alternative for alternative in rule.any_of):
                    raise ValueError(f"{motion}: tier {rule.name!r} needs at least one requirement")
                for alternative in rule.any_of:
                    unknown = sorted(set(alternative) - set(METRICS[motion]))
                    if unknown:
                        raise ValueError(
                            f"{motion}: tier {rule.name!r} uses unknown metrics {unknown}; "
                            f"{motion} is measured by {sorted(METRICS[motion])}"
                        )
        missing = [motion for motion in MOTIONS if motion not in self.motions]
        if missing:
            raise ValueError(f"tiers missing for motions {missing}")
        return self


Rate = Annotated[Decimal, Field(ge=0, le=1)]


class PremiumAssociate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: Rate = Field(
        default=Decimal("0.03"), description="Of the customer's MRR, every month of the term"
    )
    qualifying_referrals: int = Field(
        default=5, ge=0, description="Won referrals in the window before one that may earn it"
    )
    window_days: int = Field(default=365, ge=1, le=MAX_WINDOW_DAYS)


class CommissionPolicy(BaseModel):
    """What partners earn; rates are fractions (0.10 is 10%)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resale_margin: dict[str, Rate] = Field(
        default={
            "registered": Decimal("0.05"),
            "certified": Decimal("0.10"),
            "premier_certified": Decimal("0.15"),
            "alliance": Decimal("0.20"),
        },
        description="Margin on recurring revenue by sell tier; one rate for every sell tier",
    )
    new_business_bonus: Rate = Field(
        default=Decimal("0.05"), description="Of first-year value, for a customer new to the vendor"
    )
    poaching_cap: Rate = Field(
        default=Decimal("0.05"), description="Highest margin on a contract won while poaching"
    )
    referral_fee: Rate = Field(default=Decimal("0.10"), description="Of first-year value, once")
    premium_associate: PremiumAssociate = PremiumAssociate()
    clawback_days: int = Field(
        default=90,
        ge=0,
        le=MAX_WINDOW_DAYS,
        description="A cancellation this soon reverses one-time fees and bonuses",
    )


class ProgramPolicy(BaseModel):
    """One version of the program's policy document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reporting_currency: Currency = "USD"
    tiers: TierPolicy
    commissions: CommissionPolicy = CommissionPolicy()

    @model_validator(mode="after")
    def _margin_for_every_sell_tier(self) -> ProgramPolicy:
        tiers = set(self.tier_order("sell"))
        rated = set(self.commissions.resale_margin)
        if tiers != rated:
            raise ValueError(
                f"commissions.resale_margin must give a rate for each sell tier {sorted(tiers)}"
                f" and no other (it has {sorted(rated)})"
            )
        return self

    def tier_order(self, motion: Motion) -> list[str]:
        return [rule.name for rule in self.tiers.motions[motion].tiers]

    def entry_tier(self, motion: Motion) -> str:
        return self.tiers.motions[motion].tiers[0].name


class PolicyDocumentError(ValueError):
    """A policy document that cannot be read or breaks the rules of a policy."""


class _DecimalLoader(yaml.SafeLoader):
    """Reads numbers with a fraction as exact decimals: a rate of 0.10 never passes a float; and
    nodes nested at most ``NESTING_LIMIT`` deep (composing a node is recursive)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > NESTING_LIMIT:
                raise DocumentTooLargeError(f"nested deeper than {NESTING_LIMIT} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_DecimalLoader.add_constructor(
    "tag:yaml.org,2002:float",
    lambda loader, node: Decimal(loader.construct_scalar(node)),  # type: ignore[arg-type]
)


def parse_policy(text: str | bytes, *, media_type: str = "application/yaml") -> ProgramPolicy:
    try:
        data: Any = (
            parse_json(text, parse_float=Decimal)
            if "json" in media_type
            else refuse_unbounded(yaml.load(text, Loader=_DecimalLoader))  # noqa: S506 (safe)
        )
    except (ValueError, yaml.YAMLError) as error:
        raise PolicyDocumentError(f"not a readable {media_type} document: {error}") from error
    return validate_policy(data)


def validate_policy(data: Any) -> ProgramPolicy:
    """A document already read (a JSON body's object), checked as ``parse_policy`` checks it."""
    try:
        return ProgramPolicy.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
            for e in error.errors()
        )
        raise PolicyDocumentError(problems) from error


@cache
def default_policy() -> ProgramPolicy:
    """DOMAIN.md's policy."""
    return parse_policy((Path(__file__).with_name("default-policy.yaml")).read_text())


@dataclass(frozen=True)
class PolicyVersion:
    version: int
    effective_on: date
    policy: ProgramPolicy
    adopted_by: str
    note: str


class PolicyVersions:
    """The versions of the policy document over time: version 1 is DOMAIN.md's, in force from the
    beginning. Tiering adopts versions; commissions follows what tiering publishes."""

    def __init__(self) -> None:
        self.versions: list[PolicyVersion] = [
            PolicyVersion(1, date.min, default_policy(), "dealreg", "DOMAIN.md's defaults")
        ]

    def add(
        self, version: int, effective_on: date, document: dict[str, Any], adopted_by: str, note: str
    ) -> None:
        policy = ProgramPolicy.model_validate(document)
        # A later version effective earlier than a pending one supersedes it from its day.
        self.versions = [v for v in self.versions if v.effective_on < effective_on]
        self.versions.append(PolicyVersion(version, effective_on, policy, adopted_by, note))

    @property
    def latest(self) -> PolicyVersion:
        return self.versions[-1]

    def version_on(self, day: date) -> PolicyVersion:
        return [v for v in self.versions if v.effective_on <= day][-1]

    def policy_on(self, day: date) -> ProgramPolicy:
        return self.version_on(day).policy

    def changes_between(self, after: date, until: date) -> list[PolicyVersion]:
        """Versions taking effect in (after, until]."""
        return [v for v in self.versions if after < v.effective_on <= until]
