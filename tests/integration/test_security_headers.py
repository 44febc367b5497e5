"""The headers every answer carries (issue 19, OWASP API8): data answers are never cached,
sniffed or framed, and load nothing; a page (/docs) is never framed."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.tiering import service as tiering
from shared.auth import Role
from tests.conftest import bearer
from tests.integration.conftest import Clients

EVERY_ANSWER = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@pytest.fixture(scope="module")
def clients(shared_clients: Clients) -> Clients:
    return shared_clients


def answers(client: TestClient) -> dict[str, object]:
    return {
        "data": client.get("/v1/events", headers=bearer(Role.ADMIN)),
        "problem": client.get("/v1/events"),  # 401, no token
        "not found": client.get("/v1/nothing-here"),
        "too large": client.post(
            "/v1/admin/clock",
            content=b"{" + b" " * 30_000_000 + b"}",
            headers={**bearer(Role.ADMIN), "content-type": "application/json"},
        ),
        "document": client.get("/openapi.json"),
    }


@pytest.mark.parametrize("service", ["registration", "commissions", "tiering"])
def test_every_answer_is_neither_cached_nor_sniffed_nor_framed(
    clients: Clients, service: str
) -> None:
    client: TestClient = getattr(clients, service)
    for what, response in answers(client).items():
        headers = response.headers  # type: ignore[attr-defined]
        for name, value in EVERY_ANSWER.items():
            assert headers.get(name) == value, (what, name, dict(headers))
        assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_the_docs_page_loads_only_its_own_scripts_and_is_never_framed(
    clients: Clients,
) -> None:
    page = clients.registration.get("/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources
    assert all(source.startswith("/") for source in sources), sources  # no CDN
    for source in sources:
        assert clients.registration.get(source).status_code == 200, source


@pytest.mark.parametrize("service", ["registration", "commissions", "tiering"])
def test_a_write_without_a_valid_token_is_refused_before_its_body_is_read(
    clients: Clients, service: str
) -> None:
    """Broken JSON, or a body nobody may send, tells an unauthenticated caller nothing."""
    client: TestClient = getattr(clients, service)
    for headers in ({}, {"authorization": "Bearer not-a-token"}, {"authorization": "Basic eDp5"}):
        refused = client.post(
            "/v1/admin/clock",
            content=b'{"until": ',
            headers={**headers, "content-type": "application/json"},
        )
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/unauthenticated"


def test_metrics_answer_only_the_scrape_token_when_one_is_set(
    settings_for: Callable[..., Any],
) -> None:
    with TestClient(tiering.create_app(settings_for(metrics_token="scrape-me"))) as service:
        assert service.get("/metrics").status_code == 401
        assert service.get("/metrics", headers=bearer(Role.ADMIN)).status_code == 401
        wrong = service.get("/metrics", headers={"authorization": "Bearer scrape-you"})
        assert wrong.status_code == 401
        assert wrong.headers["content-type"] == "application/problem+json"
        scraped = service.get("/metrics", headers={"authorization": "Bearer scrape-me"})
        assert scraped.status_code == 200
        assert "dealreg_follower" in scraped.text


def test_metrics_are_open_when_no_token_is_set(clients: Clients) -> None:
    assert clients.tiering.get("/metrics").status_code == 200
