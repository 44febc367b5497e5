"""Where a webhook may be sent: https, to a public address, unless the operator allows more."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

Resolver = Callable[..., list[Any]]


class EndpointUrlError(ValueError):
    """An endpoint URL that webhooks must not be sent to."""


_PORT = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ENDPOINT_URL_PATTERN = (
    "^https://([A-Za-z0-9-]{1,63}[.])*[A-Za-z][A-Za-z0-9-]{0,62}(:" + _PORT + ")?([/?][!-~]*)?$"
)
"""An endpoint as a deployment takes it: https, named by a DNS name (its last label starting
with a letter, so no IP address), no credentials, a port in range."""
LOCAL_NAMES = ("localhost", "local", "localdomain", "internal", "home.arpa", "arpa")
"""Names, and the suffixes of names, that stay inside a network (RFC 6761, 6762, 8375)."""


def check_endpoint_url(url: str, *, allow_private: bool) -> None:
    """Refuses anything but https to a DNS name outside the local names: a subscription must
    not turn the services into a client of the vendor's own network (SSRF), cloud metadata
    included. The name is resolved, and its addresses checked, when a webhook is sent
    (``resolve_endpoint``): a check here would hold only until the name changed, and would
    look names up for whoever can subscribe. ``allow_private`` (settings) admits http and any
    host, for tests and closed networks."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EndpointUrlError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise EndpointUrlError("an endpoint URL carries no credentials")
    try:
        parts.port  # noqa: B018 (raises for a port out of range)
    except ValueError as error:
        raise EndpointUrlError(f"{url!r} has no valid port: {error}") from error
    if allow_private:
        return
    if parts.scheme != "https":
        raise EndpointUrlError("an endpoint URL must use https")
    host = parts.hostname.rstrip(".").lower()
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    else:
        raise EndpointUrlError(f"an endpoint is named by a DNS name, not an address ({host})")
    if any(host == name or host.endswith("." + name) for name in LOCAL_NAMES):
        raise EndpointUrlError(f"{host} is a name of a local network")
    if not re.match(ENDPOINT_URL_PATTERN, url):
        raise EndpointUrlError(f"{url!r} is not of the form https://<DNS name>[:port][/path]")


def resolve_endpoint(url: str, *, resolve: Resolver = socket.getaddrinfo) -> str:
    """The address to send to: the endpoint's name resolved once, every address it has checked
    (``is_global_unicast``). The webhook goes to this address (``pinned``), so the name cannot
    resolve elsewhere between the check and the connection (DNS rebinding)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [info[4][0] for info in resolve(host, port, type=socket.SOCK_STREAM)]
    except (OSError, ValueError) as error:
        raise EndpointUrlError(f"{host} does not resolve: {error}") from error
    if not addresses:
        raise EndpointUrlError(f"{host} does not resolve")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not is_global_unicast(ip):
            raise EndpointUrlError(
                f"{host} resolves to {ip}, which is not a global unicast address "
                "(a private, loopback, link-local, shared, metadata or reserved one)"
            )
    return str(addresses[0]).split("%")[0]


def pinned(url: str, address: str) -> tuple[str, str]:
    """``url`` sent to ``address``, and the ``Host`` header that still names the endpoint (TLS
    is checked against the name too: ``sni_hostname``)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host = parts.netloc
    return urlunsplit(parts._replace(netloc=netloc)), host


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
