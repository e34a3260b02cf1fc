"""The system test (tests/system) runs what the docs say; these fast checks keep the docs readable for it.

Renaming the install section, dropping its placeholder or its block would
otherwise show only when the slow system test runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system import docs

REPO = Path(__file__).resolve().parents[2]


def test_install_steps_are_found_and_install_the_lock_then_the_given_wheel() -> None:
    script = docs.install_script((REPO / "docs/operations.md").read_text(), "/w/portable_loader.whl")
    lines = script.splitlines()
    lock = next(i for i, line in enumerate(lines) if "pip install --require-hashes -r requirements/runtime.txt" in line)
    wheel = next(i for i, line in enumerate(lines) if "pip install --no-deps /w/portable_loader.whl" in line)
    assert lock < wheel
    assert "systemctl enable --now portable-loader" in script
    assert docs.PACKAGE_PLACEHOLDER not in script
    assert (REPO / docs.LOCK).is_file()


def test_install_section_with_a_second_block_is_refused_with_the_fix() -> None:
    step = f"pip install --require-hashes -r {docs.LOCK}\npip install {docs.PACKAGE_PLACEHOLDER}\n"
    markdown = f"## Install on a device\n\n```sh\n{step}```\n\n```sh\nportable-loader plugins install\n```\n"
    with pytest.raises(ValueError, match="found 2: put other examples under a subheading"):
        docs.install_script(markdown, "P")
    under_subheading = markdown.replace("\n\n```sh\nportable", "\n\n### Plugins\n\n```sh\nportable")
    assert docs.install_script(under_subheading, "P") == step.replace(docs.PACKAGE_PLACEHOLDER, "P")


def test_install_steps_without_the_lock_are_refused() -> None:
    markdown = f"## Install on a device\n\n```sh\npip install {docs.PACKAGE_PLACEHOLDER}\n```\n"
    with pytest.raises(ValueError, match="requirements/runtime.txt"):
        docs.install_script(markdown, "P")


def test_the_troubleshooting_recipes_are_found() -> None:
    recipes = docs.journal_recipes("operations", (REPO / "docs/operations.md").read_text())
    assert len(recipes) >= 5
    assert all(r.command.startswith("journalctl") and r.question != r.command for r in recipes)


def test_shell_comments_are_not_headings_and_continuations_are_joined() -> None:
    markdown = (
        "## Install on a device\n\n```sh\n# 1. step\npip install --require-hashes -r requirements/runtime.txt\n"
        "cp dist/portable_loader-*.whl x\n```\n\n"
        "## Later\n\n```sh\n# Why?\njournalctl -u x \\\n  -o cat | jq .\n```\n"
    )
    assert (
        docs.install_script(markdown, "P")
        == "# 1. step\npip install --require-hashes -r requirements/runtime.txt\ncp P x\n"
    )
    assert docs.journal_recipes("d", markdown) == [docs.Recipe("d", "Why?", "journalctl -u x    -o cat | jq .")]


def test_a_missing_section_is_named() -> None:
    with pytest.raises(ValueError, match="Install on a device"):
        docs.install_script("# Operations\n", "P")
