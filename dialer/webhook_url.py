"""Where a customer's webhook may point: the server-side request forgery (SSRF) guard.

A webhook URL is the customer's, so the dialer must not become a way to reach its own
network (Redis, PostgreSQL, a cloud metadata service). Only `http` and `https` URLs on
ports 80, 443 and 1024-65535 are accepted (no SSH, SMTP or other well-known service), and
every address the host resolves to must be a public unicast address (OWASP SSRF Prevention
Cheat Sheet):

- IPv4: `is_global` (not loopback, private RFC 1918, shared RFC 6598, link-local RFC 3927
  with the cloud metadata address 169.254.169.254, reserved, unspecified) and not multicast;
- IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
  (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`, RFC 4291 2.5.5), the NAT64
  well-known prefix `64:ff9b::/96` (RFC 6052), and, besides their own rule, 6to4
  (`2002::/16`, RFC 3056) and Teredo (`2001::/32`, RFC 4380: server and client);
- other IPv6: global unicast only (`2000::/3`, RFC 4291 2.4, and `is_global`), so
  site-local `fec0::/10`, unique local `fc00::/7`, link-local, multicast and the NAT64
  local-use prefix `64:ff9b:1::/48` (RFC 8215) are refused.

A refusal names the host and the reason, never the addresses it resolved to (they are the
installation's DNS answers). The check runs when the URL is set and again at delivery
time, after DNS resolution, against the address actually connected to
(`dialer.webhooks.delivery.pinned_request`), so a name that later resolves inside cannot
reach it. `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` lifts the address rule for development and
tests; the scheme and port rules always hold.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from dialer.errors import DialerError

_SCHEMES = frozenset({"http", "https"})
_MAX_URL_LENGTH = 2048
_WELL_KNOWN_PORTS = frozenset({80, 443})
_FIRST_UNPRIVILEGED_PORT = 1024
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def port_allowed(port: int | None) -> bool:
    """Whether a webhook may go to `port` (None: the scheme's default, 80 or 443)."""
    return port is None or port in _WELL_KNOWN_PORTS or _FIRST_UNPRIVILEGED_PORT <= port <= 65535


def _ipv4_allowed(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not ip.is_multicast


def address_allowed(address: str) -> bool:
    """Whether a literal IPv4/IPv6 address is public unicast (the rules: module docstring).

    Raises `ValueError` if `address` is not an IP address.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_allowed(ip)
    if ip.ipv4_mapped is not None:
        return _ipv4_allowed(ip.ipv4_mapped)
    if ip in _IPV4_COMPATIBLE or ip in _NAT64:
        return _ipv4_allowed(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    embedded = [ip.sixtofour] if ip.sixtofour is not None else list(ip.teredo or ())
    return (
        ip in _GLOBAL_UNICAST and ip.is_global and all(_ipv4_allowed(inner) for inner in embedded)
    )


def check_webhook_url(url: str, *, allow_private: bool, resolve: bool = True) -> str:
    """`url` if a webhook may be sent there; the URL is returned unchanged.

    With `resolve`, a host name is looked up (DNS) and every address must be allowed; a
    name that does not resolve is refused too.

    Raises:
        DialerError: `webhook_url_not_allowed`, with the reason in the message (never an
            address the name resolved to).
    """
    if len(url) > _MAX_URL_LENGTH:
        raise _refused(url, f"longer than {_MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _refused(url, "not a valid URL, or the port is not a number") from error
    if parts.scheme not in _SCHEMES:
        raise _refused(url, "only http and https URLs are allowed")
    if not parts.hostname:
        raise _refused(url, "the URL has no host")
    if parts.username or parts.password:
        raise _refused(url, "credentials in the URL are not allowed")
    if not port_allowed(port):
        raise _refused(url, f"port {port} is not allowed (only 80, 443 and 1024-65535)")
    if resolve:
        allowed_addresses(parts.hostname, port, allow_private=allow_private)
    return url


def allowed_addresses(host: str, port: int | None, *, allow_private: bool) -> list[str]:
    """Every address `host` resolves to (a literal address is itself), in resolver order,
    each checked by `address_allowed` unless `allow_private`.

    Raises:
        DialerError: `webhook_url_not_allowed`, the name does not resolve or an address it
            resolves to is not public (the message names the host, not the address, and the
            development setting that would allow it, WEBHOOK_ALLOW_PRIVATE_NETWORKS).
    """
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise DialerError(
            "webhook_url_not_allowed", f"webhook host {host!r} does not resolve"
        ) from error
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private and not all(address_allowed(address) for address in addresses):
        raise DialerError(
            "webhook_url_not_allowed",
            f"webhook host {host} resolves to a non-public address (a receiver on this"
            " machine or a private network is allowed only in development, where the server"
            " runs with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true)",
        )
    return addresses


def _refused(url: str, reason: str) -> DialerError:
    return DialerError("webhook_url_not_allowed", f"webhook URL {url[:200]!r} refused: {reason}")
