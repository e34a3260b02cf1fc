"""What to do about one plugin: the folder as observed, against what runs.

A pure function, so every row of the table in docs/architecture.md
("The shape: desired state and a reconciler") is a test case; the
reconciler (loader/plugins/reconciler.py) does the I/O on both sides of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Folder(StrEnum):
    GONE = "gone"  # no folder (deleted, renamed away)
    INCOMPLETE = "incomplete"  # no manifest or executable yet
    INVALID = "invalid"  # cannot be loaded: manifest, syntax error, symbol conflict, venv build
    VALID = "valid"


class Action(StrEnum):
    NOTHING = "nothing"
    FORGET = "forget"  # drop its status: nothing runs, nothing is there
    UNLOAD = "unload"
    WAIT = "wait"  # report waiting: a copy may still be going on
    INVALID = "invalid"  # report invalid with the error
    REJECT = "reject"  # keep the running version, report why the folder's version was refused
    LOAD = "load"
    SWAP = "swap"  # start the new version on probation; rollback on failure
    ACCEPT = "accept"  # the folder holds the running version again: clear a reported failure


@dataclass(frozen=True)
class Observed:
    """The folder as read now."""

    folder: Folder
    digest: str | None = None
    #: INCOMPLETE only: something in it changed within the grace time.
    recently_changed: bool = False
    #: VALID only: running rules use symbols this version no longer declares.
    removes_used_symbols: bool = False


@dataclass(frozen=True)
class Running:
    """What runs for this name, if anything."""

    digest: str | None = None  # None: nothing runs
    #: The digest of a version that failed its probation and was rolled back.
    failed_digest: str | None = None
    #: A failure or refusal is being reported (cleared by ACCEPT).
    reporting_failure: bool = False


def decide(observed: Observed, running: Running) -> Action:
    """The one action for this plugin now."""
    runs = running.digest is not None
    if observed.folder is Folder.GONE:
        return Action.UNLOAD if runs else Action.FORGET
    if observed.folder in (Folder.INCOMPLETE, Folder.INVALID):
        if runs:
            return Action.REJECT
        if observed.folder is Folder.INCOMPLETE and observed.recently_changed:
            return Action.WAIT
        return Action.INVALID
    if not runs:
        return Action.LOAD
    if observed.digest == running.digest:
        return Action.ACCEPT if running.reporting_failure else Action.NOTHING
    if observed.digest == running.failed_digest:
        return Action.NOTHING
    if observed.removes_used_symbols:
        return Action.REJECT
    return Action.SWAP
