"""The system test (tests/system) runs what the docs say; these fast checks keep the docs readable for it.

Renaming the install section, dropping its placeholder or its block would
otherwise show only when the slow system test runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system import docs

REPO = Path(__file__).resolve().parents[1]


def test_install_steps_are_found_and_install_the_given_package() -> None:
    script = docs.install_script((REPO / "docs/operations.md").read_text(), "/w/portable_loader.whl")
    assert "pip install /w/portable_loader.whl" in script
    assert "systemctl enable --now portable-loader" in script
    assert docs.PACKAGE_PLACEHOLDER not in script


@pytest.mark.parametrize("name", ["operations", "logging"])
def test_every_doc_with_recipes_yields_them(name: str) -> None:
    recipes = docs.journal_recipes(name, (REPO / f"docs/{name}.md").read_text())
    assert recipes
    assert all(r.command.startswith("journalctl") and r.question for r in recipes)


def test_shell_comments_are_not_headings_and_continuations_are_joined() -> None:
    markdown = ("## Install on a device\n\n```sh\n# 1. step\ncp /path/to/portable-loader x\n```\n\n"
                "## Later\n\n```sh\n# Why?\njournalctl -u x \\\n  -o cat | jq .\n```\n")
    assert docs.install_script(markdown, "P") == "# 1. step\ncp P x\n"
    assert docs.journal_recipes("d", markdown) == [docs.Recipe("d", "Why?", "journalctl -u x    -o cat | jq .")]


def test_a_missing_section_is_named() -> None:
    with pytest.raises(ValueError, match="Install on a device"):
        docs.install_script("# Operations\n", "P")
