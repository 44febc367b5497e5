"""Registration over HTTP against a real PostgreSQL: first to register wins, and the
conflicting partner learns the rule, never the holder."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from uuid import UUID

from shared.auth import Role
from tests.conftest import bearer, eventually, registration_body
from tests.integration.conftest import Clients


def test_first_to_register_is_protected_and_the_next_is_a_conflict(clients: Clients) -> None:
    first, second = clients.enrol(), clients.enrol(legal_name="Contoso")
    crm = bearer(Role.CRM)
    won = clients.registration.post(
        "/v1/registrations", json=registration_body(first), headers=crm
    ).json()
    assert won["status"] == "approved"
    assert won["customer_key"] == "domain:acme.co.uk"
    assert won["protected_until"] is not None

    as_partner = bearer(Role.PARTNER, UUID(second))
    lost = clients.registration.post(
        "/v1/registrations",
        json=registration_body(None, domain="bob@sales.acme.co.uk"),
        headers=as_partner,
    )
    assert lost.status_code == 201
    conflict = lost.json()["conflict"]
    assert lost.json()["status"] == "conflict"
    assert conflict["rule"] == "first-to-register"
    assert conflict["conflicting_registration_id"] is None  # never who holds the customer
    assert date.fromisoformat(conflict["may_register_again_on"]) > date.fromisoformat(
        won["protected_until"]
    )
    manager_view = clients.registration.get(
        f"/v1/registrations/{lost.json()['registration_id']}",
        headers=bearer(Role.CHANNEL_MANAGER),
    ).json()
    assert manager_view["conflict"]["conflicting_registration_id"] == won["registration_id"]


def test_registering_a_customer_you_already_hold_is_refused(clients: Clients) -> None:
    partner = clients.enrol()
    crm = bearer(Role.CRM)
    clients.registration.post("/v1/registrations", json=registration_body(partner), headers=crm)
    again = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=crm
    )
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/already-registered"


def test_who_may_register(clients: Clients) -> None:
    crm = bearer(Role.CRM)
    unknown = clients.registration.post(
        "/v1/registrations",
        json=registration_body("00000000-0000-4000-8000-000000000001"),
        headers=crm,
    )
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "/problems/unknown-partner"
    referrer = clients.enrol(motions=[])
    resale = clients.registration.post(
        "/v1/registrations", json=registration_body(referrer), headers=crm
    )
    assert resale.status_code == 422
    assert "sell" in resale.json()["detail"]
    referral = clients.registration.post(
        "/v1/registrations", json={**registration_body(referrer), "motion": "refer"}, headers=crm
    )
    assert referral.status_code == 201
    influencer = clients.enrol(function="influencer", category="academia")
    refused = clients.registration.post(
        "/v1/registrations",
        json={**registration_body(influencer), "motion": "refer"},
        headers=crm,
    )
    assert refused.status_code == 422


def test_a_partner_sees_and_registers_only_its_own(clients: Clients) -> None:
    mine, theirs = clients.enrol(), clients.enrol(legal_name="Contoso")
    crm = bearer(Role.CRM)
    their_registration = clients.registration.post(
        "/v1/registrations", json=registration_body(theirs, domain="globex.com"), headers=crm
    ).json()
    me = bearer(Role.PARTNER, UUID(mine))
    assert (
        clients.registration.get(
            f"/v1/registrations/{their_registration['registration_id']}", headers=me
        ).status_code
        == 404
    )
    impersonation = clients.registration.post(
        "/v1/registrations", json=registration_body(theirs, domain="initech.com"), headers=me
    )
    assert impersonation.status_code == 403
    clients.registration.post(
        "/v1/registrations", json=registration_body(None, domain="hooli.com"), headers=me
    )
    listed = eventually(
        lambda: clients.registration.get("/v1/registrations", headers=me).json()["registrations"]
    )
    assert {r["partner_id"] for r in listed} == {mine}


def test_racing_registrations_protect_exactly_one(clients: Clients) -> None:
    partners = [clients.enrol(legal_name=f"Partner {i}") for i in range(12)]
    crm = bearer(Role.CRM)

    def register(partner: str) -> tuple[int, str]:
        response = clients.registration.post(
            "/v1/registrations",
            json=registration_body(partner, domain="race.example.com"),
            headers=crm,
        )
        return response.status_code, response.json().get("status", "")

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(register, partners))
    assert [code for code, _ in results] == [201] * 12
    assert sorted(status for _, status in results).count("approved") == 1


def test_lists_page_by_opaque_cursor(clients: Clients) -> None:
    partner = clients.enrol()
    crm = bearer(Role.CRM)
    for n in range(5):
        clients.registration.post(
            "/v1/registrations",
            json={**registration_body(partner, domain=f"customer{n}.com"), "external_id": f"o{n}"},
            headers=crm,
        )
    eventually(
        lambda: (
            len(clients.registration.get("/v1/registrations", headers=crm).json()["registrations"])
            == 5
        )
    )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = clients.registration.get("/v1/registrations", params=params, headers=crm).json()
        seen += [r["external_id"] for r in page["registrations"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"o{n}" for n in range(5)]
    by_crm_id = clients.registration.get(
        "/v1/registrations", params={"external_id": "o3"}, headers=crm
    ).json()["registrations"]
    assert [r["external_id"] for r in by_crm_id] == ["o3"]


def test_a_contract_names_its_registration_or_its_customer(clients: Clients) -> None:
    partner = clients.enrol()
    crm = bearer(Role.CRM)
    registration = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=crm
    ).json()
    signed = clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registration["registration_id"],
            "start_date": "2027-01-01",
            "mrr": {"amount": "250.00", "currency": "EUR"},
        },
        headers=crm,
    )
    assert signed.status_code == 201
    contract = signed.json()
    assert contract["partner_id"] == partner
    assert contract["end_date"] == "2027-12-31"
    assert contract["renewal_due_on"] == "2027-10-02"
    assert Decimal(contract["mrr"]["amount"]) == Decimal("250.00")
    neither = clients.registration.post(
        "/v1/contracts",
        json={"start_date": "2027-01-01", "mrr": {"amount": "1", "currency": "EUR"}},
        headers=crm,
    )
    assert neither.status_code == 422
    float_money = clients.registration.post(
        "/v1/contracts",
        json={
            "customer": {"name": "X", "country": "FR"},
            "start_date": "2027-01-01",
            "mrr": {"amount": "1.5", "currency": "euro"},
        },
        headers=crm,
    )
    assert float_money.status_code == 422
