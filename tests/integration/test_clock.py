"""The clock turns time into events once, whoever runs it and however often."""

from __future__ import annotations

from typing import Any

from shared.auth import Role
from tests.conftest import bearer, registration_body
from tests.integration.conftest import Clients


def renewal_dues(clients: Clients) -> list[dict[str, Any]]:
    events = clients.registration.get(
        "/v1/events", params={"limit": 1000}, headers=bearer(Role.AUDITOR)
    ).json()["events"]
    return [e for e in events if e["type"] == "RenewalDue"]


def test_running_the_clock_twice_to_one_instant_raises_renewal_due_once(clients: Clients) -> None:
    partner = clients.enrol()
    crm, admin = bearer(Role.CRM), bearer(Role.ADMIN)
    registration = clients.registration.post(
        "/v1/registrations", json=registration_body(partner), headers=crm
    ).json()
    clients.registration.post(
        "/v1/contracts",
        json={
            "registration_id": registration["registration_id"],
            "start_date": "2027-01-01",
            "mrr": {"amount": "100", "currency": "USD"},
        },
        headers=crm,
    )
    before = clients.registration.post(
        "/v1/admin/clock", json={"until": "2027-10-01T23:59:59Z"}, headers=admin
    ).json()
    assert before["decisions"] == 0
    assert renewal_dues(clients) == []
    first = clients.registration.post(
        "/v1/admin/clock", json={"until": "2027-10-02T00:00:00Z"}, headers=admin
    ).json()
    again = clients.registration.post(
        "/v1/admin/clock", json={"until": "2027-10-02T00:00:00Z"}, headers=admin
    ).json()
    later = clients.registration.post(
        "/v1/admin/clock", json={"until": "2027-12-01T00:00:00Z"}, headers=admin
    ).json()
    assert (first["decisions"], again["decisions"], later["decisions"]) == (1, 0, 0)
    (due,) = renewal_dues(clients)
    assert due["data"]["due_on"] == "2027-10-02"
    assert (
        clients.registration.get("/v1/admin/clock", headers=admin)
        .json()["now"]
        .startswith("2027-12-01")
    )
    assert clients.registration.get("/v1/admin/clock", headers=bearer(Role.CRM)).status_code == 403
