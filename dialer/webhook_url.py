"""Where a customer's webhook may point: the server-side request forgery (SSRF) guard.

A webhook URL is the customer's, so the dialer must not become a way to reach its own
network (Redis, PostgreSQL, a cloud metadata service). Only `http` and `https` URLs are
accepted, and every address the host resolves to must be a public unicast address: not
loopback, private (RFC 1918, RFC 4193), link-local (RFC 3927, RFC 4291; this includes the
cloud metadata address 169.254.169.254), multicast, reserved or unspecified (OWASP SSRF
Prevention Cheat Sheet). The check runs when the URL is set and again at delivery time,
after DNS resolution, against the address actually connected to, so a name that later
resolves inside cannot reach it. `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` lifts the address
rule for development and tests; the scheme rule always holds.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from dialer.errors import DialerError

_SCHEMES = frozenset({"http", "https"})
_MAX_URL_LENGTH = 2048


def address_allowed(address: str) -> bool:
    """Whether a literal IPv4/IPv6 address is public unicast (see the module docstring).

    An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is judged as its IPv4 address.
    Raises `ValueError` if `address` is not an IP address.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_webhook_url(url: str, *, allow_private: bool, resolve: bool = True) -> str:
    """`url` if a webhook may be sent there; the URL is returned unchanged.

    With `resolve`, a host name is looked up (DNS) and every address must be allowed; a
    name that does not resolve is refused too.

    Raises:
        DialerError: `webhook_url_not_allowed`, with the reason in the message.
    """
    if len(url) > _MAX_URL_LENGTH:
        raise _refused(url, f"longer than {_MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise _refused(url, "only http and https URLs are allowed")
    if not parts.hostname:
        raise _refused(url, "the URL has no host")
    if parts.username or parts.password:
        raise _refused(url, "credentials in the URL are not allowed")
    try:
        port = parts.port
    except ValueError as error:
        raise _refused(url, "the port is not a number from 0 to 65535") from error
    if allow_private or not resolve:
        return url
    for address in resolve_addresses(parts.hostname, port):
        if not address_allowed(address):
            raise _refused(url, f"{parts.hostname} resolves to a non-public address {address}")
    return url


def resolve_addresses(host: str, port: int | None = None) -> list[str]:
    """Every address `host` resolves to (a literal address is itself), in resolver order.

    Raises:
        DialerError: `webhook_url_not_allowed`, the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise DialerError(
            "webhook_url_not_allowed", f"webhook host {host!r} does not resolve"
        ) from error
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refused(url: str, reason: str) -> DialerError:
    return DialerError("webhook_url_not_allowed", f"webhook URL {url[:200]!r} refused: {reason}")
