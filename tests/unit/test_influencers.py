"""Influencers earn nothing (DOMAIN.md "Commissions"; issue 17, item 4): commissions learns a
partner's function from tiering's ``PartnerEnrolled``; an influencer's contract is recorded and
earns no line. Decided as the service and the what-if decide (``Replay``)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from uuid import UUID

from services.commissions.domain.contracts import Contract
from services.commissions.domain.partners import Account
from shared.contracts import PartnerEnrolled
from tests.unit.commission_books import Books, at


def enrolled(books: Books, function: str, category: str, on: date) -> UUID:
    partner_id = uuid.uuid4()
    books.position += 1
    books.decide(
        PartnerEnrolled(
            log="tiering",
            position=books.position,
            stream_version=1,
            occurred_at=at(on, 8),
            partner_id=partner_id,
            legal_name=f"A {category}",
            home_country="DE",
            regions=["EMEA"],
            motions=[],
            function=function,
            category=category,
        )
    )
    return partner_id


def statements_of(books: Books, partner_id: UUID) -> list[str]:
    found = [books.log.statement(statement_id) for statement_id in books.log.statements]
    return sorted(s.period for s in found if s.partner_id == partner_id)


def test_an_influencers_contract_is_recorded_and_earns_no_line() -> None:
    books = Books()
    university = enrolled(books, "influencer", "academia", date(2026, 12, 1))
    seller = enrolled(books, "sales", "solution_reseller", date(2026, 12, 1))

    influenced = books.sign(university, "acme.com", "1000.00", date(2027, 1, 1))
    books.sign(seller, "globex.com", "1000.00", date(2027, 1, 1))
    books.run_clock(datetime(2027, 4, 1, tzinfo=UTC))

    assert statements_of(books, university) == []
    contract = books.log.find(influenced)
    assert isinstance(contract, Contract)  # recorded, for renewals and cancellations
    assert contract.earning is None
    assert contract.paid == {}
    account = books.log.find(university)
    assert isinstance(account, Account)
    assert (account.function, account.category, account.locks) == ("influencer", "academia", {})
    assert books.lines(seller, "2027-01") == [  # a partner of another function earns
        ("new_business_bonus", "600.00"),
        ("resale_margin", "50.00"),
    ]


def test_an_influencers_customer_is_no_longer_new_to_the_vendor() -> None:
    """The influencer's contract was the customer's first with the vendor: a seller who signs
    the customer later earns its margin and no new-business bonus."""
    books = Books()
    university = enrolled(books, "influencer", "academia", date(2026, 12, 1))
    seller = enrolled(books, "sales", "solution_reseller", date(2026, 12, 1))
    books.sign(university, "acme.com", "1000.00", date(2027, 1, 1))
    books.sign(seller, "acme.com", "2000.00", date(2027, 2, 1))
    books.run_clock(datetime(2027, 3, 1, tzinfo=UTC))

    assert books.lines(seller, "2027-02") == [("resale_margin", "100.00")]
    assert statements_of(books, university) == []


def test_a_partner_enrolled_twice_is_recorded_once() -> None:
    books = Books()
    partner = enrolled(books, "influencer", "industry_analyst", date(2026, 12, 1))
    account = books.log.find(partner)
    assert isinstance(account, Account)
    account.enrol(function="sales", category="sales_agent", caused_by="tiering#99")
    assert account.pending_events == []
    assert account.function == "influencer"
