"""Message templates and the TwiML document."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from dialer.errors import DialerError
from dialer.providers.twiml import (
    MissingVariableError,
    TemplateError,
    build_twiml,
    dial_twiml,
    render_message,
    say_twiml,
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
    twiml = build_twiml(
        "Reminder",
        gather_action_url="https://d.example/g?a=1&b=2",
        prompt="To confirm, press 1.",
        timeout_s=7,
        no_input="No answer. Goodbye.",
        disclosure="This call may be recorded.",
    )
    disclosure, say, gather, fallback = list(parse(twiml))
    assert (disclosure.text, say.text) == ("This call may be recorded.", "Reminder")
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "timeout": "7",
        "action": "https://d.example/g?a=1&b=2",
        "method": "POST",
    }
    assert [child.text for child in gather] == ["To confirm, press 1."]
    assert (fallback.tag, fallback.text) == ("Say", "No answer. Goodbye.")


def test_twiml_of_a_menu_without_another_answer_says_nothing_on_silence() -> None:
    """The opt-out line alone asks nothing of the callee: silence ends the call quietly."""
    say, gather = list(parse(build_twiml("Hi", gather_action_url="https://d.example/g")))
    assert (say.tag, gather.tag) == ("Say", "Gather")


def test_twiml_say_and_dial() -> None:
    say, hangup = list(parse(say_twiml("Goodbye.")))
    assert (say.text, hangup.tag) == ("Goodbye.", "Hangup")
    say, dial = list(parse(dial_twiml("Connecting.", "+12125550100")))
    assert (say.text, dial.tag, dial.text) == ("Connecting.", "Dial", "+12125550100")
