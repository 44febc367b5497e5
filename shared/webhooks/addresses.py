"""Where a webhook may be sent: https, to a public address, unless the operator allows more."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

Resolver = Callable[..., list[Any]]


class EndpointUrlError(ValueError):
    """An endpoint URL that webhooks must not be sent to."""


def check_endpoint_url(
    url: str, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo
) -> None:
    """Refuses anything but https to public addresses: a subscription must not turn the
    services into a client of the vendor's own network (SSRF). ``allow_private`` (settings)
    admits http and private, loopback and link-local addresses, for tests and closed networks.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EndpointUrlError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise EndpointUrlError("an endpoint URL carries no credentials")
    if allow_private:
        return
    if parts.scheme != "https":
        raise EndpointUrlError("an endpoint URL must use https")
    try:
        port = parts.port or 443
        addresses = {info[4][0] for info in resolve(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, ValueError) as error:
        raise EndpointUrlError(f"{parts.hostname} does not resolve: {error}") from error
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_reserved
            or ip.is_multicast
            or ip.is_unspecified
        ):
            raise EndpointUrlError(
                f"{parts.hostname} resolves to {ip}, a private, loopback or link-local address"
            )
