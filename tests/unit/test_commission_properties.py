"""Properties of statements over any history (hypothesis): totals are the sum of the lines in
each currency; replaying the same history gives the same statements to the cent; a closed month
never changes whatever comes after."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.commissions.domain.contracts import Contract
from services.commissions.domain.statements import Statement
from tests.unit.commission_books import Books

PARTNERS = [uuid5(NAMESPACE_URL, f"partner-{n}") for n in range(3)]
CUSTOMERS = ["acme.com", "globex.com", "initech.com", "umbrella.com", "hooli.com"]
TIERS = ["registered", "certified", "premier_certified", "alliance"]

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=3)
sign = st.tuples(
    st.just("sign"),
    st.integers(0, len(PARTNERS)),  # the last one stands for a direct contract
    st.sampled_from(CUSTOMERS),
    amounts,
    st.sampled_from(["USD", "EUR", "JPY"]),
    st.integers(1, 18),
    st.integers(0, 60),
    st.sampled_from(["sell", "sell", "refer"]),
    st.booleans(),
)
advance = st.tuples(st.just("advance"), st.integers(1, 75))
operations = st.lists(
    st.one_of(
        sign,
        sign,
        advance,
        advance,
        st.tuples(st.just("tier"), st.integers(0, len(PARTNERS) - 1), st.sampled_from(TIERS)),
        st.tuples(st.just("cancel"), st.integers(0, 50), st.integers(0, 120)),
        st.tuples(st.just("renew"), st.integers(0, 50), amounts, st.integers(1, 12)),
    ),
    min_size=8,
    max_size=40,
)


Snapshot = dict[UUID, tuple[Any, Any]]


def play(ops: list[tuple[Any, ...]]) -> tuple[Books, list[Snapshot]]:
    """Runs a history; after each run of the clock, the statements issued so far."""
    books = Books()
    today = date(2027, 1, 1)
    contracts: list[UUID] = []
    closed: list[Snapshot] = []
    for n, op in enumerate(ops):
        kind = op[0]
        if kind == "sign":
            _, who, customer, mrr, currency, term, days_ago, motion, poached = op
            partner = PARTNERS[who] if who < len(PARTNERS) else None
            start = today - timedelta(days=days_ago)
            contracts.append(
                books.sign(
                    partner,
                    customer,
                    str(mrr),
                    start,
                    term_months=term,
                    currency=currency,
                    motion=motion,
                    poached=poached and partner is not None,
                    reported=today,
                    contract_id=uuid5(NAMESPACE_URL, f"contract-{n}"),
                )
            )
        elif kind == "tier":
            books.tier(PARTNERS[op[1]], op[2], today)
        elif kind in ("cancel", "renew") and contracts:
            contract = books.log.find(contracts[op[1] % len(contracts)])
            if not isinstance(contract, Contract):
                continue  # a direct contract: commissions keeps none
            if kind == "cancel":
                books.cancel(contract.id, contract.start_date + timedelta(days=op[2]), today)
            else:
                last = contract.terms[-1]
                books.renew(
                    contract.id, last.start + relativedelta(months=last.months), str(op[2]), op[3]
                )
        elif kind == "advance":
            today += timedelta(days=op[1])
            books.run_clock(datetime(today.year, today.month, today.day, tzinfo=UTC))
            closed.append({k: v for k, v in books.all_statements().items() if v[1] is not None})
    return books, closed


def sums(statement: Statement) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for line in statement.lines:
        totals[line.amount.currency] = totals.get(line.amount.currency, Decimal(0)) + (
            line.amount.amount
        )
    return totals


quick = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@quick
@given(operations)
def test_a_statements_total_is_the_sum_of_its_lines_in_each_currency(
    ops: list[tuple[Any, ...]],
) -> None:
    books, _ = play(ops)
    for statement_id in books.log.statements:
        statement = books.log.repository.get(statement_id)
        assert statement.totals() == sums(statement)
        for line in statement.lines:
            assert line.amount == line.amount.rounded()  # rounded once, to the minor unit
        if statement.issued is not None:
            issue = statement.issued
            assert issue.totals == sums(statement)
            for currency in {*issue.totals, *issue.carried_in}:
                balance = issue.totals.get(currency, Decimal(0)) + issue.carried_in.get(
                    currency, Decimal(0)
                )
                paid_and_carried = issue.payable.get(currency, Decimal(0)) + (
                    issue.carried_out.get(currency, Decimal(0))
                )
                assert balance == paid_and_carried


@quick
@given(operations)
def test_replaying_the_history_gives_the_same_statements_to_the_cent(
    ops: list[tuple[Any, ...]],
) -> None:
    first, _ = play(ops)
    replayed, _ = play(ops)
    assert replayed.all_statements() == first.all_statements()


@quick
@given(operations)
def test_a_closed_month_is_identical_before_and_after_later_events(
    ops: list[tuple[Any, ...]],
) -> None:
    books, snapshots = play(ops)
    final = books.all_statements()
    for snapshot in snapshots:
        for statement_id, closed in snapshot.items():
            assert final[statement_id] == closed
