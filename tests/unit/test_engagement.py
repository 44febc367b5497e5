"""DOMAIN.md's rules of engagement, decided in memory (``domain.engagement``): facts in, the
outcome out. Numbers are DOMAIN.md's: 90 days of protection, 2 extensions of 30 days, 2 business
days to review, a renewal window of 90 days. The same rules over HTTP and PostgreSQL are in
tests/integration/test_rules_of_engagement.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from eventsourcing.utils import resolve_topic

from services.registration.domain.claims import CustomerClaim, CustomerClaims
from services.registration.domain.customers import CustomerIdentity
from services.registration.domain.engagement import (
    APPROVED,
    CONFLICT,
    EXPIRED,
    FIRST_TO_REGISTER,
    LISTED_DUPLICATES,
    PENDING_REVIEW,
    POACHING,
    POSSIBLE_DUPLICATE,
    AlreadyRegisteredError,
    Decision,
    Facts,
    Incumbency,
    RegistrationRuleError,
    StillProtectedError,
    TransitionError,
    decide,
    direct_collision,
    may_approve,
)
from services.registration.domain.partners import KnownPartner
from services.registration.domain.registrations import Registration
from shared.money import Money

TODAY = date(2027, 3, 1)
NOW = datetime(2027, 3, 1, 9, tzinfo=UTC)  # a Monday
ACME = CustomerIdentity.of(name="Acme Corp", country="GB", domain="www.acme.co.uk")


def partner(**overrides: object) -> KnownPartner:
    values: dict[str, object] = {
        "partner_id": uuid4(),
        "legal_name": "Northwind",
        "motions": ("sell",),
        "function": "sales",
    }
    values.update(overrides)
    return KnownPartner(**values)  # type: ignore[arg-type]


def unclaimed(customer: CustomerIdentity = ACME, line: str = "cloud") -> CustomerClaims:
    return CustomerClaims.found(customer.keys, line, lambda _: None)


def claimed(
    key: str,
    holder: UUID,
    until: date,
    customer: CustomerIdentity = ACME,
    registration_id: UUID | None = None,
) -> CustomerClaims:
    claim = CustomerClaim(
        customer_key=key,
        product_line="cloud",
        registration_id=registration_id or uuid4(),
        partner_id=holder,
        protected_until=until,
    )
    return CustomerClaims.found(
        customer.keys, "cloud", lambda claim_id: claim if claim_id == claim.id else None
    )


def facts(
    who: KnownPartner | None = None,
    *,
    customer: CustomerIdentity = ACME,
    claims: CustomerClaims | None = None,
    similar: Sequence[tuple[UUID, CustomerIdentity]] = (),
    incumbency: Incumbency | None = None,
    motion: str = "sell",
    itself: UUID | None = None,
) -> Facts:
    return Facts(
        partner=who or partner(),
        motion=motion,
        customer=customer,
        claims=claims or unclaimed(customer),
        similar=similar,
        incumbency=incumbency,
        today=TODAY,
        itself=itself,
    )


def submitted(decision: Decision, who: KnownPartner | None = None) -> Registration:
    return Registration.submit(
        partner_id=(who or partner()).partner_id,
        customer=ACME,
        customer_name="Acme Corp",
        customer_domain="www.acme.co.uk",
        customer_email=None,
        product_line="cloud",
        motion="sell",
        estimated_value=Money(Decimal("50000"), "GBP"),
        expected_close=date(2027, 6, 30),
        external_id=None,
        decision=decision,
        now=NOW,
    )


# --- rule 1: who may register what ------------------------------------------------------


def test_rule_1_resale_needs_the_sell_addendum_and_every_partner_may_refer() -> None:
    referrer = partner(motions=())
    with pytest.raises(RegistrationRuleError, match="sell"):
        decide(facts(referrer, motion="sell"))
    assert decide(facts(referrer, motion="refer")).status == APPROVED


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        (partner(function="influencer"), "influencer"),
        (partner(offboarded=True), "left the program"),
    ],
)
def test_rule_1_influencers_and_former_partners_register_nothing(
    who: KnownPartner, reason: str
) -> None:
    with pytest.raises(RegistrationRuleError, match=reason):
        decide(facts(who, motion="refer"))


# --- rule 2: first to register wins, 90 days ----------------------------------------------


def test_rule_2_the_first_registration_is_protected_for_90_days_from_approval() -> None:
    decision = decide(facts())
    assert decision.status == APPROVED
    assert decision.protected_until == TODAY + timedelta(days=90)
    assert decision.protects
    assert decision.flags == ()


def test_rule_2_protection_takes_every_key_the_customer_is_known_by() -> None:
    claims = unclaimed()
    taken = claims.protect(uuid4(), uuid4(), TODAY + timedelta(days=90))
    assert [claim.customer_key for claim in taken] == ["domain:acme.co.uk", "name:acme|GB"]


def test_rule_2_a_partner_registering_its_own_protected_customer_again_is_refused() -> None:
    who = partner()
    held = claimed("domain:acme.co.uk", who.partner_id, TODAY + timedelta(days=10))
    with pytest.raises(AlreadyRegisteredError):
        decide(facts(who, claims=held))


def test_rule_2_two_extensions_of_30_days_each_approved_and_no_third() -> None:
    registration = submitted(decide(facts()))
    end = registration.protected_until
    assert end == TODAY + timedelta(days=90)
    for n in (1, 2):
        registration.request_extension(by="partner", note="")
        assert registration.approve_extension(by="manager") == end + timedelta(days=30 * n)
    with pytest.raises(TransitionError, match="at most 2"):
        registration.request_extension(by="partner", note="")


# --- rule 3: conflicts --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["domain:acme.co.uk", "name:acme|GB"])
def test_rule_3_a_customer_protected_by_another_partner_on_either_key_is_a_conflict(
    key: str,
) -> None:
    until = TODAY + timedelta(days=40)
    holding = uuid4()
    decision = decide(facts(claims=claimed(key, uuid4(), until, registration_id=holding)))
    assert decision.status == CONFLICT
    assert decision.conflict_with == holding
    assert decision.may_register_again_on == until + timedelta(days=1)
    assert decision.protected_until is None
    assert not decision.protects
    assert [flag.rule for flag in decision.flags] == [FIRST_TO_REGISTER]
    assert decision.flags[0].collides_with == f"registration:{holding}"
    assert decision.flags[0].score == 1


def test_rule_3_a_name_only_registration_conflicts_with_a_domain_registration_of_that_name() -> (
    None
):
    named_only = CustomerIdentity.of(name="ACME corporation, Ltd.", country="GB")
    held = claimed("name:acme|GB", uuid4(), TODAY, customer=named_only)
    assert decide(facts(customer=named_only, claims=held)).status == CONFLICT


def test_rule_3_a_protection_that_ended_yesterday_protects_no_more() -> None:
    lapsed = claimed("domain:acme.co.uk", uuid4(), TODAY - timedelta(days=1))
    assert decide(facts(claims=lapsed)).status == APPROVED


def test_rule_3_a_conflict_cannot_be_approved_while_the_protection_lasts() -> None:
    until = TODAY + timedelta(days=5)
    held = claimed("name:acme|GB", uuid4(), until)
    with pytest.raises(StillProtectedError) as refused:
        may_approve(held, uuid4(), TODAY)
    assert refused.value.until == until
    may_approve(held, uuid4(), until + timedelta(days=1))


# --- rule 4: auto-approval, review, explanations ------------------------------------------


def test_rule_4_a_possible_duplicate_sends_the_registration_to_review_with_its_explanation() -> (
    None
):
    other = uuid4()
    near = CustomerIdentity.of(name="Akme Holdings", country="GB", domain="www.acmee.co.uk")
    decision = decide(facts(similar=[(other, near)]))
    assert decision.status == PENDING_REVIEW
    assert decision.rests_on_unclaimed_keys
    assert not decision.protects
    [flag] = decision.flags
    assert flag.rule == POSSIBLE_DUPLICATE
    assert flag.collides_with == f"registration:{other}"
    assert flag.matched_keys
    assert flag.score is not None
    assert flag.score >= Decimal("0.85")


def test_rule_4_a_registration_sharing_a_key_is_the_same_customer_not_a_near_match() -> None:
    same_name = CustomerIdentity.of(name="ACME Corporation Ltd", country="GB", domain="acme.com")
    assert decide(facts(similar=[(uuid4(), same_name)])).status == APPROVED


def test_rule_4_a_partner_not_in_good_standing_waits_for_review() -> None:
    class Lapsed(KnownPartner):
        @property
        def in_good_standing(self) -> bool:
            return False

    lapsed = Lapsed(partner_id=uuid4(), legal_name="Lapsed", motions=("sell",), function="sales")
    decision = decide(facts(lapsed))
    assert decision.status == PENDING_REVIEW
    assert [flag.rule for flag in decision.flags] == ["partner-standing"]


def test_rule_4_flags_name_each_record_once_and_list_the_strongest_duplicates() -> None:
    holding = uuid4()
    held = claimed("domain:acme.co.uk", uuid4(), TODAY + timedelta(days=3), registration_id=holding)
    near = [
        (uuid4(), CustomerIdentity.of(name=f"Acme Corp {n}", country="GB", domain=None))
        for n in range(3)
    ] + [
        (uuid4(), CustomerIdentity.of(name="Acme Corpp", country="GB", domain=f"acme{n}.example"))
        for n in range(LISTED_DUPLICATES + 4)
    ]
    # The holder, found again among the similar customers, is named once, as the holder.
    decision = decide(facts(claims=held, similar=[*near, (holding, ACME)]))
    rules = [flag.rule for flag in decision.flags]
    assert rules == [FIRST_TO_REGISTER] + [POSSIBLE_DUPLICATE] * LISTED_DUPLICATES
    named = [flag.collides_with for flag in decision.flags]
    assert len(set(named)) == len(named)
    scores = [flag.score for flag in decision.flags[1:]]
    assert scores == sorted(scores, reverse=True)
    counted = decision.flags[-1]
    assert counted.others == len(near) - LISTED_DUPLICATES - 3  # numbered names differ
    assert counted.as_data()["others"] == counted.others
    assert "others" not in decision.flags[1].as_data()


def test_rule_4_a_resubmission_is_not_its_own_duplicate_nor_its_own_holder() -> None:
    who = partner()
    itself = uuid4()
    own = claimed("domain:acme.co.uk", who.partner_id, TODAY, registration_id=itself)
    near = CustomerIdentity.of(name="Acme Corpp", country="GB", domain="acme-corp.example")
    decision = decide(facts(who, claims=own, similar=[(itself, near)], itself=itself))
    assert decision.status == APPROVED


def test_rule_4_a_review_falls_overdue_after_2_business_days() -> None:
    near = CustomerIdentity.of(name="Akme Holdings", country="GB", domain="www.acmee.co.uk")
    registration = submitted(decide(facts(similar=[(uuid4(), near)])))
    assert registration.review_due_at == NOW + timedelta(days=2)
    assert registration.note_time(NOW + timedelta(days=2) - timedelta(seconds=1)) is None
    assert registration.note_time(NOW + timedelta(days=2)) == "overdue"


# --- rule 5: expiry -------------------------------------------------------------------------


def test_rule_5_protection_expires_the_day_after_its_end_when_time_passes() -> None:
    registration = submitted(decide(facts()))
    end = registration.protected_until
    assert end is not None
    last_day = datetime.combine(end, datetime.min.time(), UTC) + timedelta(hours=23)
    assert registration.note_time(last_day) is None
    assert registration.note_time(last_day + timedelta(hours=1)) == "expired"
    assert registration.status == EXPIRED


# --- rule 6: incumbents -----------------------------------------------------------------------


def test_rule_6_registering_another_partners_customer_in_its_renewal_window_is_poaching() -> None:
    incumbency = Incumbency(uuid4(), uuid4(), TODAY + timedelta(days=60))
    decision = decide(facts(incumbency=incumbency))
    assert decision.status == APPROVED  # not blocked: the customer chooses
    assert decision.poaching == incumbency  # the incumbent is told
    [flag] = decision.flags
    assert flag.rule == POACHING
    assert flag.collides_with == f"contract:{incumbency.contract_id}"


def test_rule_6_renewing_ones_own_customer_is_no_poaching() -> None:
    who = partner()
    incumbency = Incumbency(uuid4(), who.partner_id, TODAY + timedelta(days=60))
    decision = decide(facts(who, incumbency=incumbency))
    assert decision.poaching is None
    assert decision.flags == ()


# --- rule 7: won, lost, withdrawn -------------------------------------------------------------


@pytest.mark.parametrize("reason", ["won", "lost", "withdrawn"])
def test_rule_7_the_end_of_a_deal_releases_every_claim_at_once(reason: str) -> None:
    registration_id = uuid4()
    claims = unclaimed()
    claims.protect(registration_id, uuid4(), TODAY + timedelta(days=90))
    released = claims.release(registration_id, reason)
    assert len(released) == 2
    assert claims.protecting(TODAY) is None
    assert decide(facts(claims=claims)).status == APPROVED


def test_rule_7_only_the_holding_registration_releases_its_claims() -> None:
    claims = unclaimed()
    claims.protect(uuid4(), uuid4(), TODAY + timedelta(days=90))
    assert claims.release(uuid4(), "withdrawn") == []


# --- rule 8: direct deals ---------------------------------------------------------------------


def test_rule_8_a_direct_deal_for_a_protected_customer_collides_and_the_protection_stands() -> None:
    holding = uuid4()
    held = claimed("name:acme|GB", uuid4(), TODAY + timedelta(days=1), registration_id=holding)
    collision = direct_collision(held, TODAY)
    assert collision is not None
    assert collision.registration_id == holding
    assert held.protecting(TODAY) is collision
    assert direct_collision(unclaimed(), TODAY) is None


# --- the log ------------------------------------------------------------------------------------


def test_claims_recorded_before_they_had_a_module_of_their_own_are_read() -> None:
    old = "services.registration.domain.registrations:CustomerClaim.Reclaimed"
    assert resolve_topic(old) is CustomerClaim.Reclaimed
