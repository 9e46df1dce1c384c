"""The SSRF guard on customer webhook URLs."""

from __future__ import annotations

import pytest

from dialer.errors import DialerError
from dialer.webhook_url import address_allowed, check_webhook_url


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "fe80::1",
        "224.0.0.1",
        "0.0.0.0",  # noqa: S104  # the unspecified address, refused
        "::ffff:10.0.0.1",
        "100.64.0.1",
    ],
)
def test_inside_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://localhost:5432/",
        "https://169.254.169.254/latest/meta-data",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http:///nohost",
        "http://user:pw@8.8.8.8/",
        "http://8.8.8.8:99999/",
    ],
)
def test_refused_urls_name_the_code(url: str) -> None:
    with pytest.raises(DialerError) as raised:
        check_webhook_url(url, allow_private=False)
    assert raised.value.code == "webhook_url_not_allowed"


def test_public_literal_is_accepted_and_private_networks_can_be_allowed() -> None:
    assert check_webhook_url("https://8.8.8.8/hook", allow_private=False)
    assert check_webhook_url("http://127.0.0.1:9000/hook", allow_private=True)
    with pytest.raises(DialerError):
        check_webhook_url("gopher://127.0.0.1/", allow_private=True)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a00:1",  # NAT64 (RFC 6052) of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b:1::808:808",  # the NAT64 local-use prefix (RFC 8215)
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254, the metadata service
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::a00:1",  # IPv4-compatible 10.0.0.1
        "fec0::1",  # site-local (deprecated, RFC 3879)
        "::ffff:127.0.0.1",  # IPv4-mapped
        "2001:0:7f00:1::",  # Teredo, its server 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, its client in 192.0.2.0/24
        "ff0e::1",  # global-scope multicast
        "100::1",  # discard-only (RFC 6666)
    ],
)
def test_ipv6_forms_of_inside_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1"])
def test_ipv6_forms_of_public_addresses_are_judged_by_their_ipv4(address: str) -> None:
    assert address_allowed(address)


@pytest.mark.parametrize("port", [0, 1, 22, 25, 79, 81, 442, 444, 1023])
def test_ports_other_than_80_443_and_unprivileged_are_refused(port: int) -> None:
    for allow_private in (False, True):  # the port rule always holds
        with pytest.raises(DialerError) as raised:
            check_webhook_url(f"http://8.8.8.8:{port}/hook", allow_private=allow_private)
        assert raised.value.code == "webhook_url_not_allowed"
        assert f"port {port} is not allowed" in raised.value.message


@pytest.mark.parametrize("port", ["", ":80", ":443", ":1024", ":8080", ":65535"])
def test_ports_80_443_and_unprivileged_are_allowed(port: str) -> None:
    assert check_webhook_url(f"https://8.8.8.8{port}/hook", allow_private=False)


def test_a_refusal_names_the_host_and_never_the_address_it_resolved_to() -> None:
    with pytest.raises(DialerError) as raised:
        check_webhook_url("http://localhost:8080/hook", allow_private=False)
    assert raised.value.code == "webhook_url_not_allowed"
    assert "localhost" in raised.value.message
    assert "127.0.0.1" not in raised.value.message
    assert "::1" not in raised.value.message


def test_a_private_receiver_refused_names_the_development_setting_that_allows_it() -> None:
    with pytest.raises(DialerError) as raised:
        check_webhook_url("http://127.0.0.1:9000/hook", allow_private=False)
    assert raised.value.code == "webhook_url_not_allowed"
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS=true" in raised.value.message
    assert "development" in raised.value.message
