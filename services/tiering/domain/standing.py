"""Which tier a partner's metrics reach in a motion, and what the next tier still needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from shared.policy import Motion, ProgramPolicy


@dataclass(frozen=True)
class Shortfall:
    metric: str
    have: Decimal
    need: Decimal


@dataclass(frozen=True)
class TierAssessment:
    motion: Motion
    tier: str
    """The highest tier one of whose alternatives the metrics meet."""
    next_tier: str | None
    needs: tuple[tuple[Shortfall, ...], ...]
    """For each way of reaching the next tier, what is still short of it."""


def assess(policy: ProgramPolicy, motion: Motion, metrics: Mapping[str, Decimal]) -> TierAssessment:
    rules = policy.tiers.motions[motion].tiers
    reached = 0
    for index, rule in enumerate(rules[1:], start=1):
        if any(_shortfalls(alternative, metrics) == () for alternative in rule.any_of):
            reached = index
    following = rules[reached + 1] if reached + 1 < len(rules) else None
    return TierAssessment(
        motion=motion,
        tier=rules[reached].name,
        next_tier=following.name if following else None,
        needs=tuple(_shortfalls(a, metrics) for a in following.any_of) if following else (),
    )


def _shortfalls(
    minimums: Mapping[str, Decimal], metrics: Mapping[str, Decimal]
) -> tuple[Shortfall, ...]:
    return tuple(
        Shortfall(metric, metrics.get(metric, Decimal(0)), need)
        for metric, need in sorted(minimums.items())
        if metrics.get(metric, Decimal(0)) < need
    )


def rank(policy: ProgramPolicy, motion: Motion, tier: str) -> int:
    """A tier's place in its motion, the entry tier being 0; -1 for a tier the policy no longer
    names (a version may rename tiers: whoever holds an old name takes the tier reached)."""
    order = policy.tier_order(motion)
    return order.index(tier) if tier in order else -1
