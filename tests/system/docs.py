"""What the system test runs comes from the docs, so the docs are what is tested.

Pure text functions: the install steps are the shell block under
docs/operations.md's "Install on a device" heading; the journal recipes are
every ``journalctl`` line of a shell block in docs/operations.md and
docs/logging.md, each with the comment above it as its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INSTALL_HEADING = "Install on a device"
# The doc's stand-in for "a checkout or a wheel".
PACKAGE_PLACEHOLDER = "/path/to/portable-loader"


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
    """The documented install steps, installing ``package`` where the doc names its placeholder."""
    blocks = sh_blocks(operations_md, INSTALL_HEADING)
    if len(blocks) != 1:
        raise ValueError(f"expected one sh block under '{INSTALL_HEADING}', found {len(blocks)}")
    if PACKAGE_PLACEHOLDER not in blocks[0]:
        raise ValueError(f"the install steps no longer name {PACKAGE_PLACEHOLDER}; update the system test")
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
