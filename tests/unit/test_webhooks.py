"""Webhook parts without a database: URL safety, secrets, signatures, the retry schedule."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from standardwebhooks.webhooks import Webhook

from services.registration.domain.webhooks import Endpoint, EndpointError
from shared.settings import ServiceSettings
from shared.webhooks.addresses import (
    ENDPOINT_URL_PATTERN,
    EndpointUrlError,
    check_endpoint_url,
    pinned,
    resolve_endpoint,
)
from shared.webhooks.delivery import Dispatcher, retry_after_seconds
from shared.webhooks.secrets import SecretBox, key_from_passphrase, new_secret, signature

NOW = datetime(2027, 1, 1, 12, tzinfo=UTC)


def resolving_to(address: str) -> Any:
    def resolve(host: str, port: int, **_: Any) -> list[Any]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "0.0.0.0",  # noqa: S104 (an address refused, not bound)
        "fc00::1",
        "100.100.100.200",  # a cloud's metadata service, in the shared address space
        "100.64.0.1",
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "::ffff:127.0.0.1",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo of a private client address
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
    ],
)
def test_only_global_unicast_addresses_are_sent_to(address: str) -> None:
    with pytest.raises(EndpointUrlError, match="not a global unicast address"):
        resolve_endpoint("https://portal.example", resolve=resolving_to(address))


@pytest.mark.parametrize(
    "url",
    [
        "https://100.100.100.200/latest/meta-data",
        "https://127.0.0.1/hook",
        "https://[2002:a9fe:a9fe::]/",
        "https://[::1]:8443/hook",
        "https://localhost/hook",
        "https://metadata.google.internal/computeMetadata",
        "https://printer.local/",
    ],
)
def test_an_endpoint_is_named_by_a_public_dns_name(url: str) -> None:
    with pytest.raises(EndpointUrlError, match=r"DNS name|local network"):
        check_endpoint_url(url, allow_private=False)


def test_a_public_https_endpoint_is_accepted_without_a_lookup() -> None:
    check_endpoint_url("https://portal.example/hook", allow_private=False)
    assert re.match(ENDPOINT_URL_PATTERN, "https://portal.example:8443/hook?x=1")


def test_a_webhook_goes_to_the_address_that_was_checked() -> None:
    """One lookup per attempt, and the connection goes to the address it found: the name
    cannot resolve elsewhere between the check and the connection (DNS rebinding)."""
    url = "https://portal.example:8443/hook?x=1"
    address = resolve_endpoint(url, resolve=resolving_to("93.184.216.34"))
    assert pinned(url, address) == (
        "https://93.184.216.34:8443/hook?x=1",
        "portal.example:8443",
    )
    v6 = resolve_endpoint(url, resolve=resolving_to("2606:2800:220:1:248:1893:25c8:1946"))
    assert (
        pinned("https://portal.example/", v6)[0] == "https://[2606:2800:220:1:248:1893:25c8:1946]/"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://portal.example/hook", "must use https"),
        ("ftp://portal.example", "not an http"),
        ("https://user:pw@portal.example", "no credentials"),
        ("portal.example", "not an http"),
        ("https://portal.example:99999/hook", "no valid port"),
    ],
)
def test_other_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(EndpointUrlError, match=reason):
        check_endpoint_url(url, allow_private=False)


def test_the_operator_may_allow_local_endpoints() -> None:
    check_endpoint_url("http://127.0.0.1:9000/hook", allow_private=True)


def test_a_port_out_of_range_is_refused_even_where_local_endpoints_are_allowed() -> None:
    with pytest.raises(EndpointUrlError, match="no valid port"):
        check_endpoint_url("https://127.0.0.1:99999", allow_private=True)


def test_a_global_ipv6_address_is_sent_to() -> None:
    address = resolve_endpoint(
        "https://portal.example/hook", resolve=resolving_to("2606:2800:220:1:248:1893:25c8:1946")
    )
    assert address == "2606:2800:220:1:248:1893:25c8:1946"


def test_a_secret_is_24_or_more_random_bytes_and_seals_and_opens() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(Webhook(secret)._whsecret) >= 24
    box = SecretBox(key_from_passphrase("x"))
    sealed = box.seal(secret)
    assert secret not in sealed
    assert box.open(sealed) == secret
    assert new_secret() != secret


def test_a_signature_per_secret_in_force_each_verifies() -> None:
    old, new = new_secret(), new_secret()
    body = '{"type":"DealRegistered","timestamp":"2027-01-01T12:00:00+00:00","data":{}}'
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature("msg_1", now, body, [new, old]),
    }
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["type"] == "DealRegistered"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("120", NOW) == 120
    assert retry_after_seconds("Fri, 01 Jan 2027 12:05:00 GMT", NOW) == 300
    assert retry_after_seconds("soon", NOW) is None
    assert retry_after_seconds(None, NOW) is None


def test_the_schedule_spreads_retries_and_ends() -> None:
    settings = ServiceSettings(webhook_retry_schedule_seconds=[0, 5, 300])
    dispatcher = Dispatcher.__new__(Dispatcher)
    dispatcher.settings = settings
    dispatcher.now = lambda: NOW
    after_one = dispatcher.next_attempt(1, None)
    assert after_one is not None
    assert timedelta(seconds=4.5) <= after_one - NOW <= timedelta(seconds=5.5)
    honoured = dispatcher.next_attempt(1, 600)
    assert honoured is not None
    assert honoured - NOW >= timedelta(seconds=600)
    assert dispatcher.next_attempt(3, None) is None


def test_the_default_schedule_spans_about_three_days() -> None:
    total = sum(ServiceSettings().webhook_retry_schedule_seconds)
    assert timedelta(days=2.5) < timedelta(seconds=total) < timedelta(days=3.5)


def test_a_rotation_keeps_the_previous_secret_until_the_overlap_ends() -> None:
    endpoint = Endpoint.create(
        url="https://p.example",
        event_types=["DealRegistered"],
        partner_id=None,
        description="",
        sealed_secret="first",
        by="admin",
    )
    endpoint.rotate(
        sealed_secret="second", previous_until=NOW + timedelta(hours=24), now=NOW, by="a"
    )
    assert endpoint.secrets == [
        {"sealed": "second", "until": None},
        {"sealed": "first", "until": (NOW + timedelta(hours=24)).isoformat()},
    ]
    later = NOW + timedelta(hours=30)
    endpoint.rotate(
        sealed_secret="third", previous_until=later + timedelta(hours=24), now=later, by="a"
    )
    assert [s["sealed"] for s in endpoint.secrets] == ["third", "second"]  # "first" has expired


def test_an_endpoint_wants_known_event_types_and_stays_deleted() -> None:
    with pytest.raises(EndpointError, match="no webhook event types"):
        Endpoint.create(
            url="https://p.example",
            event_types=["Everything"],
            partner_id=None,
            description="",
            sealed_secret="s",
            by="a",
        )
    endpoint = Endpoint.create(
        url="https://p.example",
        event_types=["TierChanged"],
        partner_id=None,
        description="",
        sealed_secret="s",
        by="a",
    )
    endpoint.delete(by="a")
    with pytest.raises(EndpointError, match="deleted"):
        endpoint.enable(by="a")


def attempt_resolving(monkeypatch: pytest.MonkeyPatch, address: str) -> tuple[Any, list[Any]]:
    """One delivery attempt to https://portal.example:8443/hook, the name resolving to
    ``address``: its outcome, and the requests that left."""
    import asyncio

    import httpx

    from shared.webhooks import delivery

    real = delivery.resolve_endpoint
    monkeypatch.setattr(
        delivery, "resolve_endpoint", lambda url: real(url, resolve=resolving_to(address))
    )
    dispatcher = Dispatcher.__new__(Dispatcher)
    dispatcher.settings = ServiceSettings()
    dispatcher.now = lambda: NOW
    dispatcher.box = SecretBox(key_from_passphrase("x"))
    sent: list[httpx.Request] = []
    item = delivery.Claimed(
        "msg_1",
        uuid4(),
        0,
        "{}",
        "https://portal.example:8443/hook",
        [{"sealed": dispatcher.box.seal(new_secret()), "until": None}],
    )

    async def run() -> delivery.Outcome:
        transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
        async with httpx.AsyncClient(transport=transport) as client:
            return await dispatcher.attempt(client, item)

    return asyncio.run(run()), sent


def test_an_attempt_to_a_name_that_now_resolves_privately_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcome, sent = attempt_resolving(monkeypatch, "10.0.0.1")
    assert not sent
    assert outcome.status_code is None
    assert outcome.error is not None
    assert "refused" in outcome.error


def test_an_attempt_connects_to_the_address_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, sent = attempt_resolving(monkeypatch, "93.184.216.34")
    assert outcome.status_code == 200
    [request] = sent
    assert request.url.host == "93.184.216.34"
    assert request.url.port == 8443
    assert request.headers["host"] == "portal.example:8443"
    assert request.extensions["sni_hostname"] == "portal.example"
