"""The TwiML a simulated call runs: parsed into verbs, as far as a campaign call uses them.

Verbs: `<Say>` (spoken at `SPEECH_WORDS_PER_S`), `<Pause length>`, `<Gather>` (its nested
`<Say>`s, then one key or its `timeout`; `numDigits`, `action`, `method`), `<Dial>` (a
number), `<Hangup/>`. Others are kept by name and take no time (the call log shows them).
The document comes from the simulator's client (the `Twiml` parameter, an update's
`Twiml`, a `<Gather>` action's answer) and is bounded to `TWIML_MAX_BYTES`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # the client's own TwiML, size-bounded
from dataclasses import dataclass, field

TWIML_MAX_BYTES = 64 * 1024
"""Most bytes of TwiML the simulator reads (Twilio reads at most 64 KB of a webhook's
answer)."""
SPEECH_WORDS_PER_S = 2.5
"""Words per simulated second a `<Say>` takes (150 words a minute)."""


@dataclass(frozen=True, slots=True)
class Verb:
    """One TwiML verb: its name, its text (`Say`: the words; `Dial`: the number), its
    attributes, and the verbs nested in it (`Gather`'s `Say`s)."""

    name: str
    text: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    children: tuple[Verb, ...] = ()

    def seconds(self) -> float:
        """Simulated seconds a `Say` takes; `Pause` its `length` (default 1); else 0."""
        if self.name == "Say":
            return len(self.text.split()) / SPEECH_WORDS_PER_S
        if self.name == "Pause":
            return _number(self.attributes.get("length"), 1.0)
        return 0.0

    def number(self, name: str, default: float) -> float:
        """A numeric attribute (`timeout`, `numDigits`), `default` when absent or garbled."""
        return _number(self.attributes.get(name), default)


def _number(raw: str | None, default: float) -> float:
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        return default


class TwimlError(ValueError):
    """A document that is not TwiML (not XML, no `<Response>` root, too long)."""


def parse_twiml(document: str, limit: int = TWIML_MAX_BYTES) -> list[Verb]:
    """The verbs of a `<Response>` document, in order.

    Raises:
        TwimlError: longer than `limit` bytes, not XML, or its root is not `Response`.
    """
    if len(document.encode()) > limit:
        raise TwimlError(f"TwiML longer than {limit} bytes")
    try:
        root = ET.fromstring(document)  # noqa: S314  # bounded, the client's own document
    except ET.ParseError as error:
        raise TwimlError(f"not XML: {error}") from None
    if root.tag != "Response":
        raise TwimlError("the root element is not <Response>")
    return [_verb(element) for element in root]


def _verb(element: ET.Element) -> Verb:
    return Verb(
        name=element.tag,
        text=(element.text or "").strip(),
        attributes=dict(element.attrib),
        children=tuple(_verb(child) for child in element),
    )
