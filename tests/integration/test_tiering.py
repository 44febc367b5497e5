"""Tiering over HTTP: contracts signed at registration promote a partner, and the TierChanged
reaches registration and commissions."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from shared.auth import Role
from tests.conftest import bearer, eventually, registration_body
from tests.integration.conftest import Clients

pytestmark = pytest.mark.postgres

CRM, ADMIN = bearer(Role.CRM), bearer(Role.ADMIN)


def standing(clients: Clients, partner: str, **params: str) -> dict[str, Any]:
    response = clients.tiering.get(f"/v1/partners/{partner}", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def motion(result: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [m for m in result["standing"] if m["motion"] == name]
    return found


def sign(clients: Clients, registration_id: str, mrr: str, start: str) -> None:
    response = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registration_id,
            "start_date": start,
            "term_months": 12,
            "mrr": {"amount": mrr, "currency": "USD"},
        },
        headers=CRM,
    )
    assert response.status_code == 201, response.text


def test_contracts_signed_at_registration_promote_the_partner_everywhere(
    clients: Clients, database_url: str
) -> None:
    partner = clients.enrol(regions=["EMEA", "NA"])
    fresh = standing(clients, partner)
    assert fresh["tiers"] == {"refer": "associate", "sell": "registered"}
    sell = motion(fresh, "sell")
    assert sell["next_tier"] == "certified"
    assert {s["metric"] for way in sell["needs"] for s in way} == {
        "first_year_value",
        "approved_registrations",
    }

    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=CRM
    )
    assert registered.status_code == 201, registered.text
    sign(clients, registered.json()["registration_id"], "10000.00", "2026-01-01")

    promoted = eventually(
        lambda: (s := standing(clients, partner))["tiers"]["sell"] == "premier_certified" and s
    )
    sell = motion(promoted, "sell")
    assert sell["metrics"]["first_year_value"] == "120000.00"
    assert sell["next_tier"] == "alliance"

    movements = clients.tiering.get(
        "/v1/tiers/movements", params={"partner_id": partner}, headers=ADMIN
    ).json()["movements"]
    assert [(m["motion"], m["tier"], m["reason"]) for m in movements][-1] == (
        "sell",
        "premier_certified",
        "promotion",
    )

    def tier_at(table: str) -> str | None:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                f"SELECT tier FROM {table} WHERE partner_id = %s AND motion = 'sell'",  # noqa: S608
                (partner,),
            ).fetchone()
        return row[0] if row else None

    assert eventually(lambda: tier_at("commissions_partner_tiers") == "premier_certified")

    def registration_sees() -> bool:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT tiers->>'sell' FROM registration_partners WHERE partner_id = %s",
                (partner,),
            ).fetchone()
        return row is not None and row[0] == "premier_certified"

    assert eventually(registration_sees)


def test_a_partner_token_sees_only_its_own_standing(clients: Clients) -> None:
    mine, theirs = clients.enrol(), clients.enrol(legal_name="Contoso")
    token = bearer(Role.PARTNER, partner_id=mine)  # type: ignore[arg-type]
    assert clients.tiering.get(f"/v1/partners/{mine}", headers=token).status_code == 200
    other = clients.tiering.get(f"/v1/partners/{theirs}", headers=token)
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
