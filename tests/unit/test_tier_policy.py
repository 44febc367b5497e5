"""The program's policy as data, and the tiers it gives, at every boundary of DOMAIN.md."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.tiering.domain.standing import Shortfall, assess
from shared.policy import (
    PolicyDocumentError,
    default_policy,
    parse_policy,
)

D = Decimal

BOUNDARIES = [
    # motion, metrics, tier
    ("sell", {}, "registered"),
    ("sell", {"first_year_value": D("24999.99"), "regions": D(1)}, "registered"),
    ("sell", {"first_year_value": D("25000"), "regions": D(1)}, "certified"),
    ("sell", {"first_year_value": D("99999.99"), "regions": D(2)}, "certified"),
    ("sell", {"first_year_value": D("100000"), "regions": D(1)}, "certified"),
    ("sell", {"first_year_value": D("100000"), "regions": D(2)}, "premier_certified"),
    ("sell", {"first_year_value": D("999999.99"), "regions": D(2)}, "premier_certified"),
    ("sell", {"first_year_value": D("1000000"), "regions": D(1)}, "certified"),
    ("sell", {"first_year_value": D("1000000"), "regions": D(2)}, "alliance"),
    ("sell", {"approved_registrations": D(9), "regions": D(1)}, "registered"),
    ("sell", {"approved_registrations": D(10), "regions": D(1)}, "certified"),
    ("refer", {"won_referrals": D(4)}, "associate"),
    ("refer", {"won_referrals": D(5)}, "premium_associate"),
    ("service", {"certifications": D(1), "projects": D(1)}, "registered"),
    ("service", {"certifications": D(2), "projects": D(0)}, "registered"),
    ("service", {"certifications": D(2), "projects": D(1)}, "certified"),
    (
        "service",
        {"certifications": D(5), "projects": D(5), "services_training": D(101)},
        "certified",
    ),
    (
        "service",
        {"certifications": D(4), "projects": D(5), "services_training": D(201)},
        "certified",
    ),
    (
        "service",
        {"certifications": D(5), "projects": D(4), "services_training": D(201)},
        "certified",
    ),
    (
        "service",
        {"certifications": D(5), "projects": D(5), "services_training": D(201)},
        "premier_certified",
    ),
    (
        "service",
        {"certifications": D(15), "projects": D(20), "services_training": D(201)},
        "premier_certified",
    ),
    (
        "service",
        {"certifications": D(14), "projects": D(20), "services_training": D(301)},
        "premier_certified",
    ),
    (
        "service",
        {"certifications": D(15), "projects": D(19), "services_training": D(301)},
        "premier_certified",
    ),
    (
        "service",
        {"certifications": D(15), "projects": D(20), "services_training": D(301)},
        "alliance",
    ),
    ("manage", {"managed_mrr": D("1999.99")}, "registered"),
    ("manage", {"managed_mrr": D("2000")}, "certified"),
    ("manage", {"managed_mrr": D("19999.99")}, "certified"),
    ("manage", {"managed_mrr": D("20000")}, "premier_certified"),
    ("manage", {"managed_mrr": D("99999.99")}, "premier_certified"),
    ("manage", {"managed_mrr": D("100000")}, "alliance"),
    ("build", {"integrations": D(0)}, "registered"),
    ("build", {"integrations": D(1)}, "certified"),
    ("build", {"integrations": D(3), "joint_customers": D(4)}, "certified"),
    ("build", {"integrations": D(2), "joint_customers": D(5)}, "certified"),
    ("build", {"integrations": D(3), "joint_customers": D(5)}, "premier_certified"),
    ("build", {"integrations": D(9), "joint_customers": D(50)}, "premier_certified"),
    ("build", {"integrations": D(10), "joint_customers": D(49)}, "premier_certified"),
    ("build", {"integrations": D(10), "joint_customers": D(50)}, "alliance"),
]


@pytest.mark.parametrize(
    ("motion", "metrics", "tier"),
    BOUNDARIES,
    ids=[
        f"{m}-{t}-{'-'.join(f'{k}={v}' for k, v in x.items()) or 'nothing'}"
        for m, x, t in BOUNDARIES
    ],
)
def test_tier_at_each_boundary(motion: str, metrics: dict[str, Decimal], tier: str) -> None:
    assert assess(default_policy(), motion, metrics).tier == tier  # type: ignore[arg-type]


def test_the_standing_says_what_the_next_tier_still_needs() -> None:
    standing = assess(default_policy(), "sell", {"first_year_value": D("30000"), "regions": D(1)})
    assert standing.tier == "certified"
    assert standing.next_tier == "premier_certified"
    assert standing.needs == (
        (Shortfall("first_year_value", D("30000"), D("100000")), Shortfall("regions", D(1), D(2))),
    )
    top = assess(default_policy(), "refer", {"won_referrals": D(7)})
    assert (top.tier, top.next_tier, top.needs) == ("premium_associate", None, ())


def test_the_default_document_is_domain_md() -> None:
    policy = default_policy()
    assert policy.reporting_currency == "USD"
    assert policy.tiers.window_days == 365
    assert policy.tier_order("sell") == ["registered", "certified", "premier_certified", "alliance"]
    assert policy.entry_tier("refer") == "associate"


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("tiers: [", "not a readable"),
        ("reporting_currency: usd\ntiers: {motions: {}}", "reporting_currency"),
        ("tiers: {motions: {sell: {tiers: [{name: registered}]}}}", "tiers missing for motions"),
        (
            "tiers: {motions: {sell: {tiers: [{name: registered, any_of: [{regions: 1}]}]}}}",
            "entry tier",
        ),
        (
            "tiers: {motions: {sell: {tiers: [{name: r}, {name: c, any_of: [{seats: 3}]}]}}}",
            "unknown metrics ['seats']",
        ),
        (
            "tiers: {motions: {sell: {tiers: [{name: r}, {name: c, any_of: [{regions: -1}]}]}}}",
            "greater than or equal to 0",
        ),
        ("tiers: {window_days: 0, motions: {}}", "window_days"),
        ("tiers: {motions: {}}\nrates: 3", "rates"),
    ],
)
def test_a_bad_policy_document_says_what_is_wrong(document: str, complaint: str) -> None:
    with pytest.raises(
        PolicyDocumentError, match=complaint.replace("[", r"\[").replace("]", r"\]")
    ):
        parse_policy(document)


def test_json_documents_too() -> None:
    text = default_policy().model_dump_json()
    assert parse_policy(text, media_type="application/json") == default_policy()
