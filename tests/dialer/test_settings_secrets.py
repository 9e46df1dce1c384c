"""Secrets that are still placeholders fail loudly when the settings are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dialer.settings import SIMULATOR_AUTH_TOKEN, Settings


@pytest.mark.parametrize("password", ["changeme", "change-this-password", "Password"])
def test_a_placeholder_flower_password_is_refused(password: str) -> None:
    with pytest.raises(ValidationError, match="FLOWER_PASSWORD is a placeholder"):
        Settings(flower_password=password)


def test_a_real_flower_password_is_kept() -> None:
    settings = Settings(flower_password="k3-flower-9x")
    assert settings.flower_password is not None
    assert settings.flower_password.get_secret_value() == "k3-flower-9x"


def test_twilio_refuses_the_simulators_public_auth_token() -> None:
    """The simulator's token is in the source: with it, anyone could sign status callbacks
    that Twilio's validator accepts."""
    with pytest.raises(ValidationError, match="simulator's public auth token"):
        Settings(provider="twilio", twilio_account_sid="AC" + "5" * 32)
    with pytest.raises(ValidationError, match="simulator's public auth token"):
        Settings(twilio_account_sid="AC" + "5" * 32, twilio_auth_token=SIMULATOR_AUTH_TOKEN)
    real = Settings(provider="twilio", twilio_auth_token="f" * 32)
    assert real.provider == "twilio"
    assert Settings().provider == "simulator"


@pytest.mark.parametrize("token", ["changeme", "short-token"])
def test_a_placeholder_or_short_metrics_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="METRICS_TOKEN"):
        Settings(metrics_token=token)
