"""Every row of the reconcile table in docs/architecture.md, against the pure decision function."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loader.plugins.decision import Action, Folder, Observed, Running, decide

A, B, C = "digest-a", "digest-b", "digest-c"

#: (row as written in docs/architecture.md, observed, running, expected action)
ROWS = [
    ("gone | no | forget", Observed(Folder.GONE), Running(), Action.FORGET),
    ("gone | yes | unload", Observed(Folder.GONE), Running(A), Action.UNLOAD),
    (
        "incomplete, changed within the grace time | no | wait",
        Observed(Folder.INCOMPLETE, recently_changed=True),
        Running(),
        Action.WAIT,
    ),
    (
        "incomplete, unchanged for the grace time | no | invalid",
        Observed(Folder.INCOMPLETE, recently_changed=False),
        Running(),
        Action.INVALID,
    ),
    ("invalid | no | invalid", Observed(Folder.INVALID), Running(), Action.INVALID),
    ("incomplete or invalid | yes | reject", Observed(Folder.INVALID), Running(A), Action.REJECT),
    (
        "incomplete or invalid | yes | reject",
        Observed(Folder.INCOMPLETE, recently_changed=True),
        Running(A),
        Action.REJECT,
    ),
    ("valid | no | load", Observed(Folder.VALID, A), Running(), Action.LOAD),
    ("valid, same digest | yes, nothing reported | nothing", Observed(Folder.VALID, A), Running(A), Action.NOTHING),
    (
        "valid, same digest | yes, a failure reported | accept",
        Observed(Folder.VALID, A),
        Running(A, failed_digest=B, reporting_failure=True),
        Action.ACCEPT,
    ),
    (
        "valid, the digest that failed and was rolled back | yes | nothing",
        Observed(Folder.VALID, B),
        Running(A, failed_digest=B, reporting_failure=True),
        Action.NOTHING,
    ),
    (
        "valid, other digest, removes a symbol a running rule uses | yes | reject",
        Observed(Folder.VALID, B, removes_used_symbols=True),
        Running(A),
        Action.REJECT,
    ),
    ("valid, other digest | yes | swap", Observed(Folder.VALID, B), Running(A), Action.SWAP),
    ("valid, other digest | yes | swap", Observed(Folder.VALID, C), Running(A, failed_digest=B), Action.SWAP),
]


@pytest.mark.parametrize("row, observed, running, expected", ROWS, ids=[f"{i}:{r[0]}" for i, r in enumerate(ROWS)])
def test_decision_row(row, observed, running, expected):
    assert decide(observed, running) is expected


def test_every_row_of_the_documented_table_is_tested():
    text = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    table = text.split("| folder | running | action |")[1].split("\n\n")[0]
    documented = set()
    for line in table.strip().splitlines()[1:]:
        cells = [re.sub(r"[`*]", "", c).strip() for c in line.strip().strip("|").split("|")]
        documented.add(f"{cells[0]} | {cells[1]} | {cells[2].split(':')[0].split(',')[0].split(' (')[0]}")
    tested = {row for row, *_ in ROWS}
    assert documented == tested
