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
    """Refuses anything but https to global unicast addresses: a subscription must not turn
    the services into a client of the vendor's own network (SSRF), cloud metadata included.
    ``allow_private`` (settings) admits http and any address, for tests and closed networks."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EndpointUrlError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise EndpointUrlError("an endpoint URL carries no credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise EndpointUrlError(f"{url!r} has no valid port: {error}") from error
    if allow_private:
        return
    if parts.scheme != "https":
        raise EndpointUrlError("an endpoint URL must use https")
    try:
        addresses = {info[4][0] for info in resolve(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, ValueError) as error:
        raise EndpointUrlError(f"{parts.hostname} does not resolve: {error}") from error
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not is_global_unicast(ip):
            raise EndpointUrlError(
                f"{parts.hostname} resolves to {ip}, which is not a global unicast address "
                "(a private, loopback, link-local, shared, metadata or reserved one)"
            )


def is_global_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Reachable on the internet and one host: not private, loopback, link-local, shared
    (100.64.0.0/10, where cloud metadata answers too), reserved or multicast. An IPv6 address
    that carries an IPv4 one (mapped, 6to4, Teredo) is judged by that IPv4 address too."""
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        carried = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        return all(is_global_unicast(inner) for inner in carried if inner is not None)
    return True
