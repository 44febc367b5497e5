from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from services.registration.domain.claims import CustomerClaim
from services.registration.domain.contracts import Contract, contract_end
from services.tiering.domain.partners import MembershipError, Partner
from shared.money import Money


def enrol(**overrides: object) -> Partner:
    values: dict[str, object] = {
        "legal_name": "Northwind",
        "home_country": "DE",
        "regions": ["EMEA"],
        "motions": ["sell"],
        "function": "sales",
        "category": "solution_reseller",
        "management": "formal_program",
        "on": date(2026, 1, 1),
    }
    values.update(overrides)
    return Partner.enrol(**values)  # type: ignore[arg-type]


def test_enrolment_enters_every_motion_at_its_first_tier() -> None:
    partner = enrol(motions=["build", "sell"])
    assert partner.tiers == {"refer": "associate", "sell": "registered", "build": "registered"}
    assert partner.motions == ["sell", "build"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"function": "wizardry"}, "unknown function"),
        ({"category": "academia"}, "is not of function"),
        ({"management": "vibes"}, "management structure"),
        ({"motions": ["refer"]}, "no addendum"),
    ],
)
def test_enrolment_refuses_what_the_program_does_not_know(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(MembershipError, match=message):
        enrol(**overrides)


def test_a_term_ends_the_day_before_its_anniversary() -> None:
    assert contract_end(date(2026, 1, 1), 12) == date(2026, 12, 31)
    assert contract_end(date(2026, 1, 31), 1) == date(2026, 2, 27)


def test_renewal_due_is_raised_once_from_ninety_days_before_the_end() -> None:
    contract = Contract.sign(
        customer_key="domain:acme.com",
        partner_id=uuid4(),
        registration_id=None,
        motion="sell",
        start_date=date(2026, 1, 1),
        term_months=12,
        mrr=Money(Decimal(100), "USD"),
        one_time=None,
        external_id=None,
        reported_at=datetime(2025, 12, 20, 9, tzinfo=UTC),
    )
    assert contract.renewal_due_on == date(2026, 10, 2)
    assert not contract.note_time(date(2026, 10, 1))
    assert contract.note_time(date(2026, 10, 2))
    assert not contract.note_time(date(2026, 11, 1))


def test_a_contract_term_is_at_least_a_month() -> None:
    with pytest.raises(ValueError, match="at least one month"):
        Contract.sign(
            customer_key="k",
            partner_id=None,
            registration_id=None,
            motion=None,
            start_date=date(2026, 1, 1),
            term_months=0,
            mrr=Money(Decimal(1), "USD"),
            one_time=None,
            external_id=None,
            reported_at=datetime(2025, 12, 20, 9, tzinfo=UTC),
        )


def test_a_claim_protects_through_its_last_day_and_its_id_is_the_key() -> None:
    claim = CustomerClaim(
        customer_key="domain:acme.com",
        product_line="Cloud",
        registration_id=uuid4(),
        partner_id=uuid4(),
        protected_until=date(2026, 3, 31),
    )
    assert claim.protects_on(date(2026, 3, 31))
    assert not claim.protects_on(date(2026, 4, 1))
    assert claim.id == CustomerClaim.create_id("domain:acme.com", "cloud")
