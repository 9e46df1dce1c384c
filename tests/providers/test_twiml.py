"""Message templates and the TwiML document."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from dialer.errors import DialerError
from dialer.providers.twiml import (
    MissingVariableError,
    TemplateError,
    build_twiml,
    render_message,
    template_placeholders,
)


def parse(document: str) -> ET.Element:
    return ET.fromstring(document)  # noqa: S314  # our own output, not untrusted input


def test_placeholders_ignore_escaped_braces() -> None:
    assert template_placeholders("Hi {name}, {{not}} {time} {name}") == {"name", "time"}
    assert template_placeholders("no placeholders {{}}") == set()


@pytest.mark.parametrize("template", ["{", "}", "{0}", "{}", "{a.b}", "{a[0]}", "{a!r}", "{a:>5}"])
def test_malformed_templates_are_refused(template: str) -> None:
    with pytest.raises(TemplateError) as caught:
        template_placeholders(template)
    assert isinstance(caught.value, DialerError)
    assert caught.value.code == "invalid_template"


def test_render_inserts_values_verbatim() -> None:
    rendered = render_message("Hi {name}, {{ok}} at {time}", {"name": "Ann {x}", "time": "3 pm"})
    assert rendered == "Hi Ann {x}, {ok} at 3 pm"


@pytest.mark.parametrize("variables", [{}, {"name": ""}, {"name": "  "}])
def test_missing_variable(variables: dict[str, str]) -> None:
    with pytest.raises(MissingVariableError) as caught:
        render_message("Hi {name}", variables)
    assert caught.value.name == "name"
    assert caught.value.code == "missing_variable"
    assert isinstance(caught.value, DialerError)
    assert caught.value.http_status == 422


def test_twiml_says_the_message_escaped() -> None:
    root = parse(build_twiml("Fish & <chips>"))
    assert root.tag == "Response"
    [say] = list(root)
    assert (say.tag, say.text, say.get("voice")) == ("Say", "Fish & <chips>", "Polly.Joanna")


def test_twiml_with_gather() -> None:
    root = parse(build_twiml("Reminder", gather_action_url="https://d.example/g?a=1&b=2"))
    say, gather, fallback = list(root)
    assert say.text == "Reminder"
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "numDigits": "1",
        "action": "https://d.example/g?a=1&b=2",
        "method": "POST",
    }
    assert [child.text for child in gather] == ["Press 1 to confirm, 2 to cancel."]
    assert fallback.tag == "Say"
    assert fallback.text
