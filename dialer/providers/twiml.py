"""The TwiML a campaign call runs: a message rendered from a template, optionally a keypress
menu (`dialer.menu`).

Templates use `str.format` placeholders, `{name}`, with `{{` and `}}` for literal braces;
positional (`{}`, `{0}`), attribute and index fields, conversions and format specs are
rejected so a template can only insert a contact's variables verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter

from twilio.twiml.voice_response import VoiceResponse

from dialer.errors import DialerError

DEFAULT_VOICE = "Polly.Joanna"


class MissingVariableError(DialerError):
    """A template placeholder has no value (`missing_variable`); `name` is the placeholder."""

    http_status = 422

    def __init__(self, name: str) -> None:
        super().__init__("missing_variable", f"template variable {name!r} has no value")
        self.name = name


class TemplateError(DialerError):
    """A template is malformed (`invalid_template`): unbalanced braces, positional or
    computed fields."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_template", message)


def template_placeholders(template: str) -> set[str]:
    """The names of the `{name}` placeholders in `template`.

    Raises:
        TemplateError: unbalanced braces, or a field that is not a plain name.
    """
    names: set[str] = set()
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"malformed template: {exc}") from None
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        if not field_name.isidentifier() or format_spec or conversion:
            raise TemplateError(f"unsupported placeholder {{{field_name}}}: use {{name}}")
        names.add(field_name)
    return names


def render_message(template: str, variables: Mapping[str, str]) -> str:
    """`template` with each `{name}` replaced by `variables[name]`; `{{`/`}}` become braces.

    Raises:
        MissingVariableError: a placeholder has no value (absent, or empty after stripping).
        TemplateError: the template is malformed.
    """
    names = template_placeholders(template)
    for name in sorted(names):
        if not str(variables.get(name, "")).strip():
            raise MissingVariableError(name)
    return template.format_map({name: variables[name] for name in names})


def build_twiml(
    message: str,
    *,
    gather_action_url: str | None = None,
    prompt: str | None = None,
    timeout_s: int = 5,
    no_input: str | None = None,
    disclosure: str | None = None,
    voice: str = DEFAULT_VOICE,
) -> str:
    """The TwiML document: `<Say>` the `disclosure` first (a recorded call's), then the
    message; with `gather_action_url`, a `<Gather input="dtmf" numDigits="1"
    timeout=timeout_s action=URL method="POST">` around the `prompt` (one key, bounded
    wait), followed by `no_input` said when no key is pressed (Gather falls through on
    timeout; nothing said when None, and the call ends)."""
    response = VoiceResponse()
    if disclosure:
        response.say(disclosure, voice=voice)
    response.say(message, voice=voice)
    if gather_action_url is not None:
        gather = response.gather(
            input="dtmf",
            num_digits=1,
            timeout=timeout_s,
            action=gather_action_url,
            method="POST",
        )
        if prompt:
            gather.say(prompt, voice=voice)
        if no_input:
            response.say(no_input, voice=voice)
    return str(response)


def say_twiml(text: str, voice: str = DEFAULT_VOICE) -> str:
    """`<Say>` the text, then `<Hangup/>`."""
    response = VoiceResponse()
    response.say(text, voice=voice)
    response.hangup()
    return str(response)


def dial_twiml(text: str, to: str, voice: str = DEFAULT_VOICE) -> str:
    """`<Say>` the text, then `<Dial>` the number `to` (E.164): the transfer of a menu."""
    response = VoiceResponse()
    response.say(text, voice=voice)
    response.dial(to)
    return str(response)
