"""The OpenAPI documents are the contract: schemathesis over each running service, every check on.

Each service runs as a deployment runs it (webhook endpoints at public names only), and
schemathesis reads its ``/openapi.json`` and sends what the document allows and what it does
not: every answer must be one the document lists, with the content type and body it promises;
a request the document allows must not be refused as malformed; one it does not allow must be.
Its configuration, with the few operations whose rules JSON Schema cannot state, is
``tests/contract/schemathesis.toml``; its hooks, ``tests/contract/schemathesis_hooks.py``.
Bounded and repeatable: ``CONTRACT_EXAMPLES`` examples per operation (30), one seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.auth import Role, mint_token
from tests.conftest import JWT_SECRET, new_database
from tests.e2e.conftest import SERVICES, Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "tests" / "contract"
UNSENT = {
    # Runs the program's time to an instant: every day up to it is decided, so an instant
    # centuries ahead is minutes of work. test_clock.py and test_bad_input.py drive it.
    "advance_clock",
}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str) -> Iterator[Stack]:
    """The three services, once for the three documents."""
    production = {"DEALREG_WEBHOOK_ALLOW_PRIVATE_URLS": "false"}
    log_dir = tmp_path_factory.mktemp("contract")
    with (
        new_database(postgres_admin_url) as url,
        running_stack(url, log_dir, production) as running,
    ):
        yield running


@pytest.mark.long
@pytest.mark.parametrize("service", SERVICES)
def test_each_document_describes_what_its_service_answers(
    deployed: Stack, service: str, tmp_path: Path
) -> None:
    token = mint_token(JWT_SECRET, Role.ADMIN, subject="contract-run")
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONTRACT / "schemathesis.toml"),
        "run",
        f"{deployed.url(service)}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        os.environ.get("CONTRACT_EXAMPLES", "30"),
        "--seed",
        "1",
        "--no-shrink",
        "--workers",
        "1",
        "--report-dir",
        str(tmp_path),
        *(argument for unsent in UNSENT for argument in ("--exclude-operation-id", unsent)),
    ]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "DEALREG_TOKEN": token,
            "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
            "NO_COLOR": "1",
        },
        check=False,
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
