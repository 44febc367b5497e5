"""Commissions end to end over HTTP: contracts and a renewal reported at registration, a
promotion at tiering, the clock run to the end of three months, and the statements as expected
(issue 6)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from dateutil.relativedelta import relativedelta

from shared.auth import Role
from tests.conftest import PARTNER_BODY, bearer, eventually
from tests.e2e.conftest import Stack


def contract(partner_id: str, domain: str, mrr: str, start: date, term: int) -> dict[str, Any]:
    return {
        "partner_id": partner_id,
        "customer": {"name": domain.split(".")[0].title(), "country": "US", "domain": domain},
        "start_date": start.isoformat(),
        "term_months": term,
        "mrr": {"amount": mrr, "currency": "USD"},
    }


def period(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def test_three_months_of_statements_over_http(stack: Stack) -> None:
    admin, crm, finance = bearer(Role.ADMIN), bearer(Role.CRM), bearer(Role.FINANCE)
    today = datetime.now(UTC).date()
    first = today.replace(day=1) + relativedelta(months=1)
    months = [first + relativedelta(months=n) for n in range(3)]
    with (
        stack.client("tiering") as tiering,
        stack.client("registration") as registration,
        stack.client("commissions") as commissions,
    ):
        partner_id = tiering.post("/v1/partners", json=PARTNER_BODY, headers=admin).json()[
            "partner_id"
        ]

        def signed(body: dict[str, Any]) -> str:
            response = registration.post("/v1/contracts", json=body, headers=crm)
            assert response.status_code == 201, response.text
            contract_id: str = response.json()["contract_id"]
            return contract_id

        def sell_tier() -> str | None:
            response = commissions.get(f"/v1/partner-tiers/{partner_id}", headers=admin)
            tiers = {t["motion"]: t["tier"] for t in response.json().get("tiers", [])}
            return tiers.get("sell")

        # registered (5%): 3,000.00 a month, 36,000.00 in the first year, promotes to certified
        # from its start, when tiering's clock reaches it
        signed(contract(partner_id, "alpha.example", "3000.00", first, 12))
        starts = datetime.combine(first, datetime.min.time(), UTC).isoformat()
        ran = tiering.post("/v1/admin/clock", json={"until": starts}, headers=admin)
        assert ran.status_code == 200, ran.text
        eventually(lambda: sell_tier() == "certified")
        # certified (10%), locked for these two customers
        signed(contract(partner_id, "beta.example", "1000.00", first, 12))
        gamma = signed(contract(partner_id, "gamma.example", "2000.00", first, 1))
        renewed = registration.post(
            f"/v1/contracts/{gamma}/renewal",
            json={"term_months": 2, "mrr": {"amount": "2500.00", "currency": "USD"}},
            headers=crm,
        )
        assert renewed.status_code == 200, renewed.text

        until = datetime.combine(first + relativedelta(months=3), datetime.min.time(), UTC)
        ran = commissions.post("/v1/admin/clock", json={"until": until.isoformat()}, headers=admin)
        assert ran.status_code == 200, ran.text

        def statement(month: str) -> dict[str, Any]:
            def issued() -> dict[str, Any] | None:
                response = commissions.get(f"/v1/statements/{partner_id}/{month}", headers=finance)
                body: dict[str, Any] = response.json()
                return body if response.status_code == 200 and body["status"] == "issued" else None

            return eventually(issued)

        def lines(body: dict[str, Any]) -> list[tuple[str, str, str]]:
            return sorted(
                (line["customer_key"], line["rule"], line["amount"]["amount"])
                for line in body["line_items"]
            )

        signing = statement(period(today))
        assert lines(signing) == [
            ("domain:alpha.example", "new_business_bonus", "1800.00"),
            ("domain:beta.example", "new_business_bonus", "600.00"),
            ("domain:gamma.example", "new_business_bonus", "100.00"),
        ]
        expected = [
            [("alpha", "150.00"), ("beta", "100.00"), ("gamma", "200.00")],
            [("alpha", "150.00"), ("beta", "100.00"), ("gamma", "250.00")],  # renewed at 2,500
            [("alpha", "150.00"), ("beta", "100.00"), ("gamma", "250.00")],
        ]
        for month, margins in zip(months, expected, strict=True):
            body = statement(period(month))
            assert lines(body) == [
                (f"domain:{name}.example", "resale_margin", amount) for name, amount in margins
            ]
            total = sum(Decimal(amount) for _, amount in margins)
            assert body["payable"] == [{"amount": str(total), "currency": "USD"}]
            for line in body["line_items"]:
                assert line["caused_by"][0].startswith("registration#")

        # the partner sees its own; finance exports a month and reads the payout summary
        own = commissions.get(
            "/v1/statements",
            params={"period": period(months[0])},
            headers=bearer(Role.PARTNER, partner_id=UUID(partner_id)),
        ).json()
        assert [s["partner_id"] for s in own["statements"]] == [partner_id]
        exported = commissions.get(
            "/v1/statements/export", params={"period": period(months[0])}, headers=finance
        )
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert sorted(row["amount"] for row in rows) == ["100.00", "150.00", "200.00"]
        payout = commissions.get(
            "/v1/payouts", params={"period": period(months[0])}, headers=finance
        ).json()
        assert payout["currencies"] == [
            {
                "currency": "USD",
                "partners_paid": 1,
                "payable": {"amount": "450.00", "currency": "USD"},
                "earned": {"amount": "450.00", "currency": "USD"},
                "carried_forward": {"amount": "0", "currency": "USD"},
            }
        ]
        # StatementIssued is in commissions' log, for webhooks and auditors
        events = commissions.get("/v1/events", params={"limit": 1000}, headers=admin).json()
        assert sum(e["type"] == "StatementIssued" for e in events["events"]) == 4
