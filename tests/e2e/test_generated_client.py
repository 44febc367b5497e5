"""The client a CRM team generates from the OpenAPI documents works against the services.

``openapi-python-client`` generates a typed package from each running service's
``/openapi.json`` (as the README shows), and the packages enrol a partner, register a deal, read
the review queue, report the contract won and read the partner's statement: each answer parsed
into the generated models, none left as raw JSON.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared.auth import Role, mint_token
from tests.conftest import JWT_SECRET, PARTNER_BODY, eventually, registration_body
from tests.e2e.conftest import SERVICES, Stack

BIN = Path(sys.executable).parent


def generate(stack: Stack, into: Path) -> dict[str, ModuleType]:
    """A package per service, ``dealreg_<service>``, generated from its document."""
    packages = {}
    for service in SERVICES:
        package = f"dealreg_{service}"
        subprocess.run(
            [
                str(BIN / "openapi-python-client"),
                "generate",
                "--url",
                f"{stack.url(service)}/openapi.json",
                "--meta",
                "none",
                "--output-path",
                str(into / package),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
        packages[service] = package
    sys.path.insert(0, str(into))
    return {service: importlib.import_module(package) for service, package in packages.items()}


def operation(package: ModuleType, tag: str, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag}.{name}")


def model(package: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


@pytest.mark.long
def test_a_generated_client_registers_reads_the_queue_and_reads_a_statement(
    stack: Stack, tmp_path: Path
) -> None:
    clients = generate(stack, tmp_path)
    registration, tiering, commissions = (
        clients["registration"],
        clients["tiering"],
        clients["commissions"],
    )

    def authenticated(service: str, role: Role) -> Any:
        token = mint_token(JWT_SECRET, role, subject=f"client-{role.value}")
        return clients[service].AuthenticatedClient(base_url=stack.url(service), token=token)

    enrolled = operation(tiering, "partners", "enrol").sync(
        client=authenticated("tiering", Role.ADMIN),
        body=model(tiering, "EnrolmentRequest").from_dict(PARTNER_BODY),
    )
    partner_id = str(enrolled.partner_id)

    crm = authenticated("registration", Role.CRM)
    registered = operation(registration, "registrations", "register").sync(
        client=crm,
        body=model(registration, "RegistrationRequest").from_dict(registration_body(partner_id)),
    )
    assert type(registered).__name__ == "RegistrationView", registered
    assert str(registered.partner_id) == partner_id

    queue = operation(registration, "review", "queue").sync(
        client=authenticated("registration", Role.CHANNEL_MANAGER)
    )
    assert type(queue).__name__ == "Queue", queue
    assert all(str(item.partner_id) for item in queue.items)

    contract = operation(registration, "contracts", "sign").sync(
        client=crm,
        body=model(registration, "ContractRequest").from_dict(
            {
                "registration_id": str(registered.registration_id),
                "start_date": "2027-01-01",
                "mrr": {"amount": "3000.00", "currency": "USD"},
            }
        ),
    )
    assert type(contract).__name__ == "ContractView", contract

    finance = authenticated("commissions", Role.FINANCE)
    listed = eventually(
        lambda: (
            (
                page := operation(commissions, "statements", "list_statements").sync(
                    client=finance, partner_id=partner_id
                )
            ).statements
            and page
        )
    )
    period = listed.statements[0].period
    statement = operation(commissions, "statements", "get_statement").sync(
        client=finance, partner_id=partner_id, period=period
    )
    assert type(statement).__name__ == "StatementDetail", statement
    (line,) = statement.line_items
    assert str(line.contract_id) == str(contract.contract_id)
    assert line.amount.amount == "1800.00"  # the new-business bonus: 5% of 36,000.00
