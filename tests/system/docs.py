"""What the system test runs comes from the docs, so the docs are what is tested.

Pure text functions: the install steps are the one shell block under
docs/operations.md's "Install on a device" heading (its dependencies from the
runtime lock, the wheel named as ``make dist`` leaves it); the journal recipes are
every ``journalctl`` line of a shell block in docs/operations.md and
docs/logging.md, each with the comment above it as its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INSTALL_HEADING = "Install on a device"
# The wheel as the doc names it (what `make dist` leaves in dist/); the system
# test puts the path of the wheel it built there.
PACKAGE_PLACEHOLDER = "dist/portable_loader-*.whl"
# The runtime lock, relative to the checkout the steps run in: the install
# must take the pinned, hash-checked dependencies from it.
LOCK = "requirements/runtime.txt"
LOCK_INSTALL = f"pip install --require-hashes -r {LOCK}"


@dataclass(frozen=True)
class Recipe:
    doc: str
    question: str
    command: str


def sh_blocks(markdown: str, heading: str | None = None) -> list[str]:
    """The ```sh blocks of the document, or only those in the section under ``heading``.

    Read line by line because shell comments inside a block look like headings.
    """
    blocks: list[str] = []
    current: list[str] | None = None
    in_fence = False
    section: str | None = None
    seen = heading is None
    for line in markdown.splitlines(keepends=True):
        if line.startswith("```"):
            if current is not None:
                blocks.append("".join(current))
                current = None
            elif line.strip() == "```sh" and (heading is None or section == heading):
                current = []
            in_fence = not in_fence
        elif current is not None:
            current.append(line)
        elif not in_fence and re.match(r"#{1,6} ", line):
            section = line.lstrip("#").strip()
            seen = seen or section == heading
    if not seen:
        raise ValueError(f"no section '{heading}' in the document")
    return blocks


def install_script(operations_md: str, package: str) -> str:
    """The documented install steps, installing ``package`` where the doc names its placeholder.

    The section holds exactly one sh block, so that what a user runs and what
    the system test runs cannot drift apart; other examples go under a
    subheading of their own.
    """
    blocks = sh_blocks(operations_md, INSTALL_HEADING)
    if len(blocks) != 1:
        raise ValueError(
            f"expected one sh block (the install steps) directly under '{INSTALL_HEADING}', "
            f"found {len(blocks)}: put other examples under a subheading"
        )
    for needed in (PACKAGE_PLACEHOLDER, LOCK_INSTALL):
        if needed not in blocks[0]:
            raise ValueError(
                f"the install steps under '{INSTALL_HEADING}' no longer contain '{needed}'; "
                "the system test installs the wheel there, its dependencies from the lock"
            )
    return blocks[0].replace(PACKAGE_PLACEHOLDER, package)


def journal_recipes(doc: str, markdown: str) -> list[Recipe]:
    """Every journalctl command line in the document's sh blocks, named by the comment above it."""
    recipes = []
    for block in sh_blocks(markdown):
        question = ""
        for line in block.replace("\\\n", " ").splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                question = stripped.lstrip("# ").strip()
            elif stripped.startswith("journalctl"):
                recipes.append(Recipe(doc, question or stripped, stripped))
    return recipes
