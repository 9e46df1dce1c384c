"""The Reference pages of the documentation site are generated from the code
(`dialer.docs_reference`, `make docs-reference`): the committed pages must be what the
generator writes now, and a changed setting, command, error code or report field must change
them, so a page cannot go stale without failing CI.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer

from campaigns.csvsource import IngestErrorCode
from campaigns.reports import CampaignReport
from dialer import docs_reference, errors
from dialer.cli import app
from dialer.numbers import RejectReason
from dialer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class SettingsWithANewKnob(Settings):
    new_knob_s: float = 2.5
    """Seconds the new knob waits."""


class ReportWithANewField(CampaignReport):
    new_field: int = 0
    """Contacts counted by the new field."""


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return docs_reference.pages()


def test_the_committed_reference_pages_are_what_the_code_generates(
    generated: dict[str, str],
) -> None:
    stale = [
        name
        for name, text in generated.items()
        if (ROOT / "docs/reference" / name).read_text(encoding="utf-8") != text
    ]
    assert stale == [], f"run `make docs-reference` and commit: {stale} are stale"


def test_a_new_setting_changes_the_settings_page() -> None:
    before = docs_reference.settings_page(Settings)
    after = docs_reference.settings_page(SettingsWithANewKnob)
    assert "NEW_KNOB_S" not in before
    assert "| `NEW_KNOB_S` | `2.5` | Seconds the new knob waits. |" in after


def test_a_new_command_changes_the_cli_page() -> None:
    extra = typer.Typer()

    @extra.command()
    def hello(loud: bool = typer.Option(False, "--loud", help="Shout it.")) -> None:
        """Say hello."""

    extended = typer.Typer(help=app.info.help)
    extended.add_typer(app)
    extended.add_typer(extra)
    before = docs_reference.cli_page(app)
    after = docs_reference.cli_page(extended)
    assert "dialer hello" not in before
    assert "## `dialer hello`\n\nSay hello." in after
    assert "| `--loud` (flag) | `false` | Shout it. |" in after


def test_a_new_error_code_changes_the_errors_page(monkeypatch: pytest.MonkeyPatch) -> None:
    before = docs_reference.errors_page()
    new = errors.ErrorCode("new_code", "ConflictError", 409, "A new refusal.", "Do the new thing.")
    monkeypatch.setattr(errors, "ERROR_CODES", (*errors.ERROR_CODES, new))
    after = docs_reference.errors_page()
    assert "new_code" not in before
    assert "| `new_code` | 409 | `ConflictError` | A new refusal. | Do the new thing. |" in after


def test_a_new_report_field_changes_the_report_page() -> None:
    before = docs_reference.report_page(CampaignReport)
    after = docs_reference.report_page(ReportWithANewField)
    assert "new_field" not in before
    assert "| `new_field` | `int` | Contacts counted by the new field. |" in after


_NOT_OURS = {"PydanticCustomError", "_SourceError", "AssertionError"}
"""`_SourceError`: a schedule run's failure code (`source_not_found`), kept on the run."""


def _raised_codes() -> dict[str, str]:
    """`{code: file}` of every string-literal code passed to a `...Error(...)` constructor
    or a `super().__init__(...)` in the dialer's packages."""
    codes: dict[str, str] = {}
    for package in ("dialer", "campaigns", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if "simulator" in path.parts or path.name == "docs_reference.py":
                continue  # the simulator answers Twilio's errors, not ours
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                first = node.args[0]
                if (
                    name in {"__init__", "NumberRejected"}
                    # pydantic's error types end in `details`, not in a code
                    or (name.endswith("Error") and name not in _NOT_OURS)
                ) and (
                    isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and re.fullmatch(r"[a-z][a-z_]+", first.value)
                ):
                    codes[first.value] = str(path.relative_to(ROOT))
    return codes


DOCUMENTED = (
    {e.code for e in errors.ERROR_CODES}
    | {r.value for r in RejectReason}
    | {c.value for c in IngestErrorCode}
)


def test_every_error_code_the_code_raises_is_in_the_error_registry() -> None:
    codes = _raised_codes()
    assert len(codes) > 40  # the scan finds the raises (it is not silently empty)
    missing = {code: where for code, where in codes.items() if code not in DOCUMENTED}
    assert missing == {}, "add these to dialer.errors.ERROR_CODES"


def test_every_code_in_the_error_tree_is_in_the_error_registry() -> None:
    doc = errors.__doc__ or ""
    tree = doc[doc.index("* DialerError") : doc.index("Outside the tree")]
    named = set(re.findall(r"`([a-z][a-z_]+)`", tree)) - {"wait"}  # `wait` requests
    assert len(named) > 30
    assert named - DOCUMENTED == set()


def test_the_error_registry_lists_each_code_once() -> None:
    codes = [e.code for e in errors.ERROR_CODES]
    assert len(codes) == len(set(codes))
