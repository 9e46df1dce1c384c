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
    assert check_webhook_url("http://127.0.0.1:9/hook", allow_private=True)
    with pytest.raises(DialerError):
        check_webhook_url("gopher://127.0.0.1/", allow_private=True)
