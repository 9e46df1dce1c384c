"""Keypress menus: what a digit pressed after the message does, and the words that offer it.

A menu is stored on the campaign (`campaigns.menu`, JSONB) as the operator schema built it
(`campaigns.options.BatchOptions.call_menu`): `{"digits": {digit: {"action", "to"}},
"prompt": text}` (a key with words of its own also has `say`), the opt-out line already
in it. The call's TwiML offers it with one
`<Gather numDigits="1">` (`dialer.providers.twiml.build_twiml`); the digit comes back to
the gather webhook, which answers with the TwiML of its action (`reply_twiml`) and, for
`opt_out`, lists the number on the account's do-not-call list in the callback's own
transaction (`dialer.dispatch.callbacks`).

An invalid key (one the menu does not hold) hears the menu once more; a second invalid
key ends the call. `repeat` says the message and the menu again, as often as the callee
asks, within the call's `TimeLimit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dialer.providers.twiml import build_twiml, dial_twiml, say_twiml

MENU_DIGITS = frozenset("0123456789*#")
"""The keys a menu may map: one key each (`numDigits="1"`)."""
GATHER_TIMEOUT_S = 5
"""Seconds `<Gather>` waits for a key after the prompt (Twilio's default `timeout`)."""
DEFAULT_OPT_OUT_DIGIT = "9"
DEFAULT_OPT_OUT_PROMPT = "To stop these calls, press {digit}."
"""The opt-out line said by default (FCC 20-186: a prerecorded call offers an automated
opt-out); `{digit}` is the opt-out key."""


RECORDING_DISCLOSURE = "This call may be recorded."
"""Said first on a recorded call unless its campaign words it otherwise."""


class MenuAction(StrEnum):
    """What a key does."""

    CONFIRM = "confirm"
    CANCEL = "cancel"
    REPEAT = "repeat"
    """Say the message and the menu again."""
    TRANSFER = "transfer"
    """Connect the callee to a number (TwiML `<Dial>`, E.164 `to`)."""
    OPT_OUT = "opt_out"
    """List the number on the account's do-not-call list (source `keypress`)."""


ACTION_WORDS: dict[MenuAction, str] = {
    MenuAction.CONFIRM: "To confirm, press {digit}.",
    MenuAction.CANCEL: "To cancel, press {digit}.",
    MenuAction.REPEAT: "To hear this message again, press {digit}.",
    MenuAction.TRANSFER: "To speak to someone, press {digit}.",
    MenuAction.OPT_OUT: DEFAULT_OPT_OUT_PROMPT,
}
"""Each action's line in the prompt when its entry has no `say` of its own."""

REPLIES: dict[MenuAction, str] = {
    MenuAction.CONFIRM: "Thank you, your answer is confirmed. Goodbye.",
    MenuAction.CANCEL: "Thank you, we have noted your cancellation. Goodbye.",
    MenuAction.TRANSFER: "Please hold while we connect you.",
    MenuAction.OPT_OUT: "You will not receive these calls again. Goodbye.",
}
INVALID_KEY = "Sorry, that is not one of the choices."
GOODBYE = "Goodbye."


@dataclass(frozen=True, slots=True)
class Menu:
    """A stored menu: digit -> (action, transfer number), the prompt said in `<Gather>`,
    and digit -> the key's own words as given (`{digit}` not yet replaced), for the keys
    whose words are not their action's (`ACTION_WORDS`): what a change to the menu
    (`campaigns.changes`) builds it again from."""

    actions: dict[str, tuple[MenuAction, str | None]]
    prompt: str
    words: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, stored: Mapping[str, Any] | None) -> Menu | None:
        """The menu a `campaigns.menu` value holds (None: the campaign has none)."""
        if not stored:
            return None
        digits = stored["digits"]
        actions = {d: (MenuAction(entry["action"]), entry.get("to")) for d, entry in digits.items()}
        words = {d: entry["say"] for d, entry in digits.items() if entry.get("say") is not None}
        return cls(actions, stored["prompt"], words)

    def stored(self) -> dict[str, Any]:
        """The JSONB value `read` reads back (`say` only on a key with words of its own)."""
        digits: dict[str, dict[str, Any]] = {}
        for digit, (action, to) in self.actions.items():
            digits[digit] = {"action": action.value, "to": to}
            if digit in self.words:
                digits[digit]["say"] = self.words[digit]
        return {"digits": digits, "prompt": self.prompt}

    def asks_an_answer(self) -> bool:
        """Whether the menu asks for more than an opt-out (then silence hears a goodbye)."""
        return any(action is not MenuAction.OPT_OUT for action, _ in self.actions.values())


def opt_out_menu() -> Menu:
    """The default menu of a call with no keys of its own: the opt-out line alone (the
    standing campaign of single calls)."""
    digit = DEFAULT_OPT_OUT_DIGIT
    return Menu(
        {digit: (MenuAction.OPT_OUT, None)}, DEFAULT_OPT_OUT_PROMPT.replace("{digit}", digit)
    )


@dataclass(frozen=True, slots=True)
class KeyReply:
    """What a key pressed does: its action (None for a key the menu does not hold) and the
    TwiML the gather webhook answers with."""

    action: MenuAction | None
    twiml: str


def reply_twiml(
    menu: Menu | None, digits: str, message: str, gather_action_url: str, *, retried: bool
) -> KeyReply:
    """The answer to `digits` pressed on a call whose menu is `menu` and whose message (as
    said, rendered) is `message`. `gather_action_url` is where the next `<Gather>` posts;
    `retried`: an invalid key was already pressed once on this call (a second one ends it).

    An unknown key, or no menu at all (a call placed before its campaign's menu changed),
    hears the menu again once, then a goodbye.
    """
    action, to = menu.actions.get(digits[:1], (None, None)) if menu else (None, None)
    match action:
        case MenuAction.REPEAT:
            assert menu is not None
            url = gather_action_url + (RETRIED_QUERY if retried else "")
            return KeyReply(action, menu_twiml(message, menu, url))
        case MenuAction.TRANSFER:
            assert to is not None
            return KeyReply(action, dial_twiml(REPLIES[action], to))
        case None if menu is not None and not retried:
            return KeyReply(None, menu_twiml(INVALID_KEY, menu, gather_action_url + RETRIED_QUERY))
        case None:
            return KeyReply(None, say_twiml(GOODBYE))
        case _:
            return KeyReply(action, say_twiml(REPLIES[action]))


RETRIED_QUERY = "?retry=1"
"""The gather action URL's query once an invalid key was pressed (the webhook reads it)."""


def menu_twiml(
    message: str, menu: Menu | None, gather_action_url: str, *, disclosure: str | None = None
) -> str:
    """The TwiML that says `disclosure` (the recording's, when given), `message` and offers
    `menu` (no menu: the message alone)."""
    if menu is None:
        return build_twiml(message, disclosure=disclosure)
    return build_twiml(
        message,
        gather_action_url=gather_action_url,
        prompt=menu.prompt,
        timeout_s=GATHER_TIMEOUT_S,
        no_input=NO_INPUT if menu.asks_an_answer() else None,
        disclosure=disclosure,
    )


NO_INPUT = "We did not receive your answer. Goodbye."
