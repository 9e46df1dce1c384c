"""The README is the short entry page of issue 23: at most ~200 lines, the two commands CI
and newcomers rely on stated plainly, and every link it gives reaching a file (the site's
pages by their path under `docs/`, each of them in the site's nav)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 200  # issue 23: "README of at most ~200 lines"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _relative_links() -> list[str]:
    return [t for t in LINK.findall(README.read_text()) if "://" not in t]


def test_the_readme_stays_a_short_entry_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move details to docs/"


def test_the_readme_states_make_test_and_make_lint() -> None:
    text = README.read_text()
    for command in ("make demo", "make test", "make lint", "make docs"):
        assert command in text, command


def test_every_relative_link_in_the_readme_reaches_a_file() -> None:
    links = _relative_links()
    assert links, "the README links to the documentation"
    missing = [t for t in links if not (ROOT / t).is_file()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_every_docs_page_the_readme_links_is_in_the_sites_nav() -> None:
    # mkdocs.yml holds a `!!python/name:` tag: read it without resolving tags.
    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)  # noqa: S506  # SafeLoader subclass

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in pages(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in pages(value)]
        return []

    in_nav = set(pages(config["nav"]))
    linked = {t.removeprefix("docs/") for t in _relative_links() if t.startswith("docs/")}
    linked = {t for t in linked if t.endswith(".md")}
    assert linked, "the README maps the site's pages"
    assert not linked - in_nav, (
        f"README links pages missing from mkdocs.yml's nav: {linked - in_nav}"
    )
