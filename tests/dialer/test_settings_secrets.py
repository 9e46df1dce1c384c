"""Secrets that are still placeholders fail loudly when the settings are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dialer.settings import Settings


@pytest.mark.parametrize("password", ["changeme", "change-this-password", "Password"])
def test_a_placeholder_flower_password_is_refused(password: str) -> None:
    with pytest.raises(ValidationError, match="FLOWER_PASSWORD is a placeholder"):
        Settings(flower_password=password)


def test_a_real_flower_password_is_kept() -> None:
    settings = Settings(flower_password="k3-flower-9x")
    assert settings.flower_password is not None
    assert settings.flower_password.get_secret_value() == "k3-flower-9x"
