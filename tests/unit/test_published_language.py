"""Every event a producer publishes decodes, through shared/ alone, into its contract."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import Mapper, Notification

from services.registration.domain.contracts import Contract
from services.registration.domain.customers import CustomerIdentity
from services.registration.domain.engagement import APPROVED, PROTECTION, Decision
from services.registration.domain.registrations import Registration
from services.tiering.domain.partners import Partner
from shared.codec import build_transcoder
from shared.contracts import (
    ALL_CONTRACTS,
    ContractSigned,
    DealRegistered,
    PartnerEnrolled,
    PublishedLanguage,
    RenewalDue,
    TierChanged,
    UnknownEventVersionError,
    schemas,
)
from shared.money import Money

MAPPER: Mapper[Any] = Mapper(build_transcoder())


def as_notifications(aggregate: Any) -> list[Notification]:
    notifications = []
    for position, event in enumerate(aggregate.collect_events(), start=1):
        stored = MAPPER.to_stored_event(event)
        notifications.append(
            Notification(
                id=position,
                originator_id=stored.originator_id,
                originator_version=stored.originator_version,
                topic=stored.topic,
                state=stored.state,
            )
        )
    return notifications


def enrolled_partner() -> Partner:
    return Partner.enrol(
        legal_name="Northwind",
        home_country="DE",
        regions=["EMEA", "APAC"],
        motions=["sell"],
        function="sales",
        category="cloud_reseller",
        management="formal_program",
        on=date(2026, 1, 5),
    )


def test_tiering_publishes_partner_enrolled_and_tier_changed() -> None:
    partner = enrolled_partner()
    language = PublishedLanguage("tiering", [PartnerEnrolled, TierChanged])
    decoded = [language.decode(n) for n in as_notifications(partner)]
    enrolled, refer, sell = decoded
    assert isinstance(enrolled, PartnerEnrolled)
    assert enrolled.partner_id == partner.id
    assert enrolled.regions == ["APAC", "EMEA"]
    assert enrolled.position == 1
    assert isinstance(sell, TierChanged)
    assert (sell.motion, sell.tier, sell.previous_tier) == ("sell", "registered", None)
    assert isinstance(refer, TierChanged)
    assert refer.tier == "associate"


def test_registration_publishes_deal_registered_contract_signed_and_renewal_due() -> None:
    partner_id = uuid4()
    registration = Registration.submit(
        partner_id=partner_id,
        customer=CustomerIdentity.of(name="Acme", country="US", domain="acme.com"),
        customer_name="Acme",
        customer_domain="acme.com",
        customer_email=None,
        product_line="cloud",
        motion="sell",
        estimated_value=Money(Decimal("1200.00"), "USD"),
        expected_close=date(2026, 6, 30),
        external_id="crm-1",
        decision=Decision(APPROVED, (), date(2027, 1, 4) + PROTECTION, None, None, None),
        now=datetime(2026, 1, 2, 9, tzinfo=UTC),
    )
    contract = Contract.sign(
        customer_key="domain:acme.com",
        partner_id=partner_id,
        registration_id=registration.id,
        motion="sell",
        start_date=date(2026, 1, 1),
        term_months=12,
        mrr=Money(Decimal("100.00"), "USD"),
        one_time=None,
        external_id="opp-9",
        reported_at=datetime(2026, 1, 3, 9, tzinfo=UTC),
    )
    contract.note_time(date(2026, 10, 2))
    language = PublishedLanguage("registration", [DealRegistered, ContractSigned, RenewalDue])
    (deal,) = [language.decode(n) for n in as_notifications(registration)]
    signed, due = [language.decode(n) for n in as_notifications(contract)]
    assert isinstance(deal, DealRegistered)
    assert deal.registration_id == registration.id
    assert deal.estimated_value == Money(Decimal("1200.00"), "USD")
    assert deal.status == "approved"
    assert isinstance(signed, ContractSigned)
    assert signed.end_date == date(2026, 12, 31)
    assert isinstance(due, RenewalDue)
    assert due.due_on == date(2026, 10, 2)


def test_a_consumer_skips_names_it_does_not_know() -> None:
    language = PublishedLanguage("tiering", [PartnerEnrolled])
    enrolled, *tier_changes = as_notifications(enrolled_partner())
    assert language.decode(enrolled) is not None
    assert all(language.decode(n) is None for n in tier_changes)


def test_older_versions_are_upcast_and_newer_ones_refused() -> None:
    class PartnerEnrolledV2(PartnerEnrolled):
        event_version = 2
        upcasters = {1: lambda state: {**state, "legal_name": state["legal_name"].upper()}}

    (enrolled, *_) = as_notifications(enrolled_partner())
    upcast = PublishedLanguage("tiering", [PartnerEnrolledV2]).decode(enrolled)
    assert isinstance(upcast, PartnerEnrolledV2)
    assert upcast.legal_name == "NORTHWIND"

    newer = Notification(
        id=9,
        originator_id=uuid4(),
        originator_version=1,
        topic="PartnerEnrolled",
        state=build_transcoder().encode({"class_version": 3, "timestamp": None}),
    )
    with pytest.raises(UnknownEventVersionError):
        PublishedLanguage("tiering", [PartnerEnrolledV2]).decode(newer)


def test_every_contract_has_a_stable_name_version_and_json_schema() -> None:
    published = schemas()
    assert set(published) == {f"{c.event_name}.v{c.event_version}" for c in ALL_CONTRACTS}
    assert {
        "PartnerEnrolled.v1",
        "DealRegistered.v1",
        "ContractSigned.v2",
        "RenewalDue.v1",
        "TierChanged.v2",
    } <= set(published)
    for schema in published.values():
        assert schema["type"] == "object"
