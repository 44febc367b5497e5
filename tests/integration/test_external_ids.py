"""A CRM id another partner used tells partner B that it is taken, and nothing else (OWASP API1).

Partner A registers a deal under the CRM id OPP-7. Partner B then sends OPP-7 three ways: a
registration, an import row and a lookup. B learns that the id is taken, but never which
registration holds it. A, sending its own id again, is told its registration, as a retrying CRM
needs.
"""

from __future__ import annotations

import uuid
from datetime import date

from shared.auth import Role
from tests.conftest import bearer, registration_body
from tests.integration.conftest import Clients

CSV_COLUMNS = (
    "partner_id,customer_name,customer_country,customer_domain,product_line,motion,"
    "estimated_amount,currency,expected_close,external_id"
)


def as_partner(partner_id: str) -> dict[str, str]:
    return bearer(Role.PARTNER, partner_id=uuid.UUID(partner_id))


def test_another_partners_crm_id_is_taken_and_nothing_more(clients: Clients) -> None:
    a, b = clients.enrol(), clients.enrol()
    first = clients.registration.post(
        "/v1/registrations",
        json=registration_body(a) | {"external_id": "OPP-7"},
        headers=as_partner(a),
    )
    assert first.status_code == 201, first.text
    a_registration = first.json()["registration_id"]

    again = clients.registration.post(
        "/v1/registrations",
        json=registration_body(a) | {"external_id": "OPP-7"},
        headers=as_partner(a),
    )
    assert again.status_code == 409
    assert again.json()["existing_id"] == a_registration  # A's own: a retry learns its record

    taken = clients.registration.post(
        "/v1/registrations",
        json=registration_body(b, domain="globex.example") | {"external_id": "OPP-7"},
        headers=as_partner(b),
    )
    assert taken.status_code == 409
    assert taken.json()["type"] == "/problems/external-id-taken"
    assert "existing_id" not in taken.json()
    assert a_registration not in taken.text

    row = f"{b},Globex,DE,globex.example,cloud,sell,12000,USD,2027-03-31,OPP-7"
    imported = clients.registration.post(
        "/v1/imports/registrations",
        content=f"{CSV_COLUMNS}\n{row}\n",
        headers={**as_partner(b), "content-type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    (result,) = imported.json()["results"]
    assert result["status"] == "rejected"
    assert result["id"] is None
    assert a_registration not in imported.text

    looked_up = clients.registration.get(
        "/v1/registrations/by-external-id/OPP-7", headers=as_partner(b)
    )
    assert looked_up.status_code == 404
    assert a_registration not in looked_up.text
    own = clients.registration.get("/v1/registrations/by-external-id/OPP-7", headers=as_partner(a))
    assert own.json()["registration_id"] == a_registration


def test_a_contracts_crm_id_does_not_tell_another_partner_the_contract(clients: Clients) -> None:
    a, b = clients.enrol(), clients.enrol()
    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(a), headers=bearer(Role.CRM)
    ).json()
    contract_id = clients.sign(
        start=date(2027, 1, 1),
        mrr="1000.00",
        registration_id=registered["registration_id"],
        external_id="CON-7",
    )
    looked_up = clients.registration.get(
        "/v1/contracts/by-external-id/CON-7", headers=as_partner(b)
    )
    assert looked_up.status_code == 404
    assert contract_id not in looked_up.text
