"""An import decides its rows as the same registrations sent one by one, in file order, would be
decided: for random files, both give exactly the same outcomes (status, flags and what they
collide with, CRM ids already recorded, and refusals with their problem type)."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.registration.importer import Importer
from shared.auth import Role
from tests.conftest import bearer
from tests.integration.conftest import Clients

pytestmark = pytest.mark.postgres

CRM = bearer(Role.CRM)
SYLLABLES = ["quor", "vane", "zel", "brix", "tam", "oru", "plex", "dan", "kiv", "sor", "mek", "ulo"]


def customers(n: int) -> list[dict[str, str]]:
    """One customer written several ways, a near match of it, and others, under a name of the
    example's own: examples share no customer, so none fills another's candidate lookups
    (decision 8's probe budget counts open registrations of every product line)."""
    rng = random.Random(n)
    stem = "".join(rng.choice(SYLLABLES) for _ in range(3))
    other = "".join(rng.choice(SYLLABLES) for _ in range(3))
    name = stem.capitalize()
    return [
        {"name": f"{name} Meditech", "country": "US", "domain": f"www.{stem}.com"},
        {"name": f"{name} Meditech Inc.", "country": "US", "email": f"buyer@sales.{stem}.com"},
        {"name": f"{stem.upper()} meditech", "country": "US"},
        {"name": f"{name} Meditek", "country": "US"},
        {"name": f"{name} Medical", "country": "US", "domain": f"{stem}-medical.com"},
        {"name": f"{other.capitalize()} Aerotron", "country": "US", "domain": f"{other}.io"},
        {"name": f"{other.capitalize()} Aerotron", "country": "DE"},
    ]


CUSTOMERS = len(customers(0))
PARTNERS = 4
"""The last one has no ``sell`` addendum: it may refer only."""

rows = st.lists(
    st.tuples(
        st.integers(0, PARTNERS - 1),
        st.integers(0, CUSTOMERS - 1),
        st.sampled_from(["sell", "refer"]),
        st.sampled_from([None, None, "A", "B"]),  # an import's rows name their CRM id
    ),
    min_size=1,
    max_size=6,  # at most the 5 possible duplicates a registration lists (engagement's cap)
)
examples = itertools.count()


def body(partner: str, customer: dict[str, str], motion: str, external_id: str, line: str) -> Any:
    return {
        "partner_id": partner,
        "customer": customer,
        "product_line": line,
        "motion": motion,
        "estimated_value": {"amount": "5000.00", "currency": "USD"},
        "expected_close": "2027-06-30",
        "external_id": external_id,
    }


def flags(found: dict[str, Any], index: dict[str, int]) -> list[tuple[str, str, Any]]:
    """The flags by rule, score and the row collided with (equal scores in either order)."""
    return sorted(
        (
            flag["rule"],
            flag["score"] or "",
            index.get(flag["collides_with"].split(":")[-1], flag["collides_with"]),
        )
        for flag in found["flags"]
    )


def one_by_one(clients: Clients, requests: list[Any]) -> list[tuple[Any, ...]]:
    index: dict[str, int] = {}
    outcomes: list[tuple[Any, ...]] = []
    for n, request in enumerate(requests):
        response = clients.registration.post("/v1/registrations", json=request, headers=CRM)
        answer = response.json()
        if response.status_code == 201:
            index[answer["registration_id"]] = n
            outcomes.append(
                (
                    "recorded",
                    answer["status"],
                    flags(answer, index),
                    answer["may_register_again_on"],
                )
            )
        elif answer.get("existing_id"):
            outcomes.append(("unchanged", index[answer["existing_id"]]))
        else:
            assert response.status_code in (404, 409, 422), response.text
            outcomes.append(("rejected", answer["type"]))
        clients.settle()  # the next request sees this one in the views
    return outcomes


def imported(clients: Clients, requests: list[Any]) -> list[tuple[Any, ...]]:
    ndjson = "\n".join(json.dumps(request) for request in requests)
    response = clients.registration.post(
        "/v1/imports/registrations",
        content=ndjson.encode(),
        headers={**CRM, "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    results = sorted(response.json()["results"], key=lambda result: result["line"])
    index = {result["id"]: n for n, result in enumerate(results) if result["status"] == "recorded"}
    outcomes: list[tuple[Any, ...]] = []
    for result in results:
        if result["status"] == "recorded":
            found = clients.registration.get(
                f"/v1/registrations/{result['id']}", headers=CRM
            ).json()
            assert found["status"] == result["registration_status"]
            outcomes.append(
                ("recorded", found["status"], flags(found, index), found["may_register_again_on"])
            )
        elif result["status"] == "unchanged":
            outcomes.append(("unchanged", index[result["id"]]))
        else:
            outcomes.append(("rejected", result["problem"]["type"]))
    clients.settle()
    return outcomes


@pytest.mark.long
def test_an_import_decides_as_its_rows_sent_one_by_one(clients: Clients) -> None:
    partners = [clients.enrol(legal_name=f"Lister {n}") for n in range(PARTNERS - 1)]
    partners.append(clients.enrol(legal_name="Referrer", motions=["manage"]))

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(rows=rows, batch=st.sampled_from([1, 3, Importer.BATCH]))
    def same(rows: list[tuple[int, int, str, str | None]], batch: int) -> None:
        n = next(examples)

        def requests(path: str) -> list[Any]:
            # A product line and CRM ids of its own for each path of each example: the two
            # histories never meet.
            written = customers(n)
            return [
                body(partners[p], written[c], motion, f"{path}{n}-{ext or i}", f"{path}-line-{n}")
                for i, (p, c, motion, ext) in enumerate(rows)
            ]

        with patch.object(Importer, "BATCH", batch):
            by_import = imported(clients, requests("import"))
        assert by_import == one_by_one(clients, requests("single")), (rows, batch)

    same()
