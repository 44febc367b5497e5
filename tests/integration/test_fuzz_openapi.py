"""Fuzzing each service's OpenAPI document with schemathesis: no request is a server error.

Every operation of the three services gets requests that fit its schema (some naming a partner,
registration and contract that exist, so that they reach past "not found") and requests that do
not, under an admin token or a partner's. The services run in this process with their workers,
as in every integration test, and the cases go through the same TestClient. Derandomized, so
every run sends the same requests, and bounded: 15 examples per operation, about half a minute
for the three services (the contract run, tests/e2e/test_openapi_contract.py, sends 30 more per
operation to the running services). ``FUZZ_EXAMPLES=200`` searches longer.
"""

from __future__ import annotations

import os
import traceback
import uuid
from datetime import date
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from shared.auth import Role
from tests.conftest import bearer, registration_body
from tests.integration.conftest import Clients

FUZZING = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "15")),
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, not shrunk
    suppress_health_check=list(HealthCheck),
)

UNFUZZED = {
    # Runs the program's time to an instant: every day, month and quarter up to it is decided,
    # so an instant centuries ahead is minutes of work, and every later request reads centuries
    # of reviews. test_clock.py drives it; test_bad_input.py its instants outside the program.
    "POST /v1/admin/clock",
}


def known_records(clients: Clients) -> dict[str, str]:
    """Path parameters that name records that exist: a partner, its registration, a contract."""
    partner_id = clients.enrol()
    registered = clients.registration.post(
        "/v1/registrations", json=registration_body(partner_id), headers=bearer(Role.CRM)
    )
    assert registered.status_code == 201, registered.text
    registration_id = registered.json()["registration_id"]
    contract_id = clients.sign(start=date(2027, 1, 1), mrr="1000", registration_id=registration_id)
    return {
        "partner_id": partner_id,
        "registration_id": registration_id,
        "contract_id": contract_id,
        "motion": "sell",
    }


def send(client: TestClient, case: Any, token: dict[str, str]) -> Any:
    """The case, with the token chosen, through the services' own TestClient (their event loop
    and database pool). A server error raises here: the TestClient re-raises it."""
    request = case.as_transport_kwargs(base_url=str(client.base_url))
    headers = {name: str(value) for name, value in (request.get("headers") or {}).items()}
    body: dict[str, Any] = {}
    if "json" in request:
        body["json"] = request["json"]
    elif request.get("data") is not None:
        data = request["data"]
        body["content"] = data if isinstance(data, bytes | str) else str(data)
    return client.request(
        request["method"],
        request["url"],
        headers={**headers, **token},
        params=request.get("params"),
        **body,
    )


def server_error(
    client: TestClient, operation: Any, known: dict[str, str], tokens: list[dict[str, str]]
) -> str | None:
    """The first server error the operation's examples find, with its traceback; or None."""
    ids = {name: value for name, value in known.items() if f"{{{name}}}" in operation.path}
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=ids),
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @FUZZING
    @given(case=cases, token=st.sampled_from(tokens))
    def fuzz(case: Any, token: dict[str, str]) -> None:
        case.validate_response(send(client, case, token), checks=[not_a_server_error])

    try:
        fuzz()
    except Exception as error:
        return f"{operation.label}: {''.join(traceback.format_exception(error))}"
    return None


@pytest.mark.long
@pytest.mark.parametrize("service", ["registration", "tiering", "commissions"])
def test_no_request_is_a_server_error(clients: Clients, service: str) -> None:
    client: TestClient = getattr(clients, service)
    known = known_records(clients)
    admin = bearer(Role.ADMIN)
    tokens = [admin, admin, bearer(Role.PARTNER, partner_id=uuid.UUID(known["partner_id"]))]
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    errors = [
        error
        for operation in operations
        if operation.label not in UNFUZZED
        and (error := server_error(client, operation, known, tokens)) is not None
    ]
    assert not errors, "\n\n".join(errors)
