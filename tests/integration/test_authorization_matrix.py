"""Who may call what: roles against operations, for every operation of the three documents.

``ACCESS`` is the decision, one entry per operation; an operation of a document without one
fails the test, so a new route cannot ship before someone decides who may call it. Each
operation is called without a token (401), with a token of each role (403 for a role left
out, never 401 or 403 for one let in), and by partner B with partner A's ids, which answers
nothing of A's. Each document's ``x-roles`` must say what the matrix says.

Roles: A admin, M channel_manager, F finance, C crm, U auditor, P partner.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any

import pytest

from shared.auth import Role
from tests.conftest import bearer, registration_body
from tests.integration.conftest import Clients

PUBLIC = ""
"""No token needed."""
ROLES = {
    "A": Role.ADMIN,
    "M": Role.CHANNEL_MANAGER,
    "F": Role.FINANCE,
    "C": Role.CRM,
    "U": Role.AUDITOR,
    "P": Role.PARTNER,
}
EVERY_LOG = {
    "GET /healthz": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /metrics": PUBLIC,
    "GET /v1/events": "AU",
    "GET /v1/events/export": "AU",
    "GET /v1/history/{entity_id}": "AU",
    "GET /v1/history": "AU",
    "GET /v1/audit/chain": "AU",
    "GET /v1/admin/clock": "A",
    "POST /v1/admin/clock": "A",
}
WEBHOOK_DELIVERIES = {
    "GET /v1/webhooks/deliveries": "AUP",
    "GET /v1/webhooks/deliveries/{message_id}/attempts": "AUP",
    "POST /v1/webhooks/deliveries/{message_id}/redelivery": "AP",
    "POST /v1/webhooks/recovery": "AP",
}
ACCESS: dict[str, dict[str, str]] = {
    "registration": {
        **EVERY_LOG,
        **WEBHOOK_DELIVERIES,
        "POST /v1/registrations": "AMCP",
        "GET /v1/registrations": "AMCUP",
        "GET /v1/registrations/by-external-id/{external_id}": "AMCUP",
        "GET /v1/registrations/{registration_id}": "AMCUP",
        "POST /v1/registrations/{registration_id}/resubmission": "AMCP",
        "POST /v1/registrations/{registration_id}/extension-request": "AMCP",
        "POST /v1/registrations/{registration_id}/withdrawal": "AMCP",
        "POST /v1/registrations/{registration_id}/loss": "AMCP",
        "GET /v1/review-queue": "AM",
        "POST /v1/registrations/{registration_id}/approval": "AM",
        "POST /v1/registrations/{registration_id}/rejection": "AM",
        "POST /v1/registrations/{registration_id}/return": "AM",
        "POST /v1/registrations/{registration_id}/extension-approval": "AM",
        "POST /v1/registrations/{registration_id}/extension-decline": "AM",
        "POST /v1/contracts": "AC",
        "GET /v1/contracts/by-external-id/{external_id}": "AMCUP",
        "GET /v1/contracts/{contract_id}": "AMCUP",
        "POST /v1/contracts/{contract_id}/renewal": "AC",
        "POST /v1/contracts/{contract_id}/cancellation": "AC",
        "POST /v1/direct-deals": "AMC",
        "GET /v1/direct-deals/{direct_deal_id}": "AMC",
        "POST /v1/imports/registrations": "AMCP",
        "POST /v1/imports/contracts": "AC",
        "POST /v1/webhooks/endpoints": "AP",
        "GET /v1/webhooks/endpoints/{endpoint_id}": "AUP",
        "PATCH /v1/webhooks/endpoints/{endpoint_id}": "AP",
        "POST /v1/webhooks/endpoints/{endpoint_id}/rotation": "AP",
        "POST /v1/webhooks/endpoints/{endpoint_id}/disable": "AP",
        "POST /v1/webhooks/endpoints/{endpoint_id}/enable": "AP",
        "DELETE /v1/webhooks/endpoints/{endpoint_id}": "AP",
    },
    "commissions": {
        **EVERY_LOG,
        **WEBHOOK_DELIVERIES,
        "GET /v1/statements": "AMFUP",
        "GET /v1/statements/export": "AMFUP",
        "GET /v1/statements/{partner_id}/{period}": "AMFUP",
        "GET /v1/ledger": "AMFUP",
        "GET /v1/payouts": "AFU",
        "GET /v1/partners/{partner_id}/account": "AMFUP",
        "POST /v1/partners/{partner_id}/premium-associate": "AP",
        "DELETE /v1/partners/{partner_id}/premium-associate": "AP",
        "GET /v1/partner-tiers/{partner_id}": "AMFUP",
        "GET /v1/rates": "AMFUP",
        "POST /v1/what-if": "A",
    },
    "tiering": {
        **EVERY_LOG,
        **WEBHOOK_DELIVERIES,
        "POST /v1/partners": "AM",
        "GET /v1/partners": "AMFU",
        "GET /v1/partners/{partner_id}": "AMFCUP",
        "POST /v1/partners/{partner_id}/addenda": "AM",
        "POST /v1/partners/{partner_id}/addenda/{motion}/termination": "AM",
        "POST /v1/partners/{partner_id}/offboarding": "AM",
        "PUT /v1/partners/{partner_id}/regions": "AM",
        "POST /v1/partners/{partner_id}/training": "AM",
        "POST /v1/partners/{partner_id}/certifications": "AM",
        "POST /v1/partners/{partner_id}/projects": "AM",
        "POST /v1/partners/{partner_id}/integrations": "AM",
        "POST /v1/partners/{partner_id}/joint-customers": "AM",
        "POST /v1/partners/{partner_id}/managed-revenue": "AM",
        "GET /v1/tiers/distribution": "AMFU",
        "GET /v1/tiers/movements": "AMFUP",
        "GET /v1/tiers/non-performers": "AMFU",
        "GET /v1/program/policy": "AMFU",
        "POST /v1/program/policy": "A",
        "GET /v1/program/policy/{version}": "AMFU",
        "GET /v1/program/rates": "AMFU",
        "POST /v1/program/rates": "AF",
        "POST /v1/program/what-if": "A",
    },
}
WRITES = ("DELETE",)  # last: what they remove stays removed for the rest of the run


def partner_a(clients: Clients) -> dict[str, str]:
    """Partner A and what it owns: each id under the name of the path parameter that takes it."""
    partner_id = clients.enrol()
    a = bearer(Role.PARTNER, partner_id=uuid.UUID(partner_id))
    registered = clients.registration.post(
        "/v1/registrations",
        json=registration_body(partner_id) | {"external_id": "OPP-A-1"},
        headers=bearer(Role.CRM),
    )
    assert registered.status_code == 201, registered.text
    registration_id = registered.json()["registration_id"]
    contract_id = clients.sign(start=date(2027, 1, 1), mrr="1000", registration_id=registration_id)
    endpoint = clients.registration.post(
        "/v1/webhooks/endpoints",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["DealRegistered"]},
        headers=a,
    )
    assert endpoint.status_code == 201, endpoint.text
    return {
        "partner_id": partner_id,
        "registration_id": registration_id,
        "contract_id": contract_id,
        "endpoint_id": endpoint.json()["endpoint_id"],
        "entity_id": registration_id,
        "external_id": "OPP-A-1",
        "direct_deal_id": str(uuid.uuid4()),
        "message_id": "msg_" + uuid.uuid4().hex,
        "period": "2027-01",
        "motion": "sell",
        "version": "1",
    }


def call(
    clients: Clients, service: str, operation: dict[str, Any], label: str, a: dict[str, str]
) -> Any:
    method, template = label.split(" ", 1)
    path = re.sub(r"\{(\w+)\}", lambda m: a[m.group(1)], template)
    query = {
        p["name"]: a[p["name"]]
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p["name"] in ("partner_id",)
    }
    body = {"json": {}} if "requestBody" in operation else {}

    def send(headers: dict[str, str]) -> Any:
        return getattr(clients, service).request(
            method, path, params=query, headers=headers, **body
        )

    send.sent = path + " " + " ".join(query.values())  # type: ignore[attr-defined]
    return send


def operations(clients: Clients, service: str) -> dict[str, dict[str, Any]]:
    document = getattr(clients, service).get("/openapi.json").json()
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


@pytest.mark.long
@pytest.mark.parametrize("service", sorted(ACCESS))
def test_every_operation_admits_the_roles_decided_and_no_other(
    clients: Clients, service: str
) -> None:
    documented = operations(clients, service)
    undecided = sorted(set(documented) - set(ACCESS[service]))
    assert not undecided, f"decide who may call {undecided} (ACCESS in this file)"
    assert not set(ACCESS[service]) - set(documented), "ACCESS names operations that are gone"

    a = partner_a(clients)
    b = bearer(Role.PARTNER, partner_id=uuid.UUID(clients.enrol()))
    a_token = bearer(Role.PARTNER, partner_id=uuid.UUID(a["partner_id"]))
    owned = [a["partner_id"], a["registration_id"], a["contract_id"], a["endpoint_id"]]
    wrong: list[str] = []
    ordered = sorted(documented, key=lambda label: label.startswith(WRITES))
    for label in ordered:
        operation, allowed = documented[label], ACCESS[service][label]
        roles = sorted(ROLES[letter].value for letter in allowed)
        if allowed != PUBLIC and operation.get("x-roles") != roles:
            wrong.append(f"{label}: the document says {operation.get('x-roles')}, not {roles}")
        send = call(clients, service, operation, label, a)
        if allowed == PUBLIC:
            continue
        if (status := send({}).status_code) != 401:
            wrong.append(f"{label} without a token: {status}")
        for letter, role in ROLES.items():
            token = b if role is Role.PARTNER else bearer(role)
            answer = send(token)
            if letter not in allowed and answer.status_code != 403:
                wrong.append(f"{label} as {role.value}: {answer.status_code}, not 403")
            if letter in allowed and answer.status_code in (401, 403) and role is not Role.PARTNER:
                wrong.append(f"{label} as {role.value}: {answer.status_code}")
            if role is Role.PARTNER:
                # what B named itself may come back (a 404 quoting it); nothing else of A's
                leaked = [i for i in owned if i in answer.text and i not in send.sent]
                if leaked:
                    wrong.append(f"{label} as partner B: A's {leaked} in {answer.text[:200]}")
                names_a = any(
                    f"{{{name}}}" in label
                    for name in ("partner_id", "registration_id", "contract_id", "endpoint_id")
                )
                # 403 or 404; or a 422 for the empty body, found wanting before any lookup
                if letter in allowed and names_a and answer.status_code not in (403, 404, 422):
                    wrong.append(f"{label} as partner B, A's ids: {answer.status_code}")
        if "P" in allowed and send(a_token).status_code in (401, 403):
            wrong.append(f"{label} as partner A, its own ids: refused")
    assert not wrong, "\n".join(wrong)
