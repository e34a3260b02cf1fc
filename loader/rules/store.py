"""Stream and rule files written for a client (REST), each change applied at once and undone if refused.

Files are the desired state: a change here is an atomic, fsync'ed write of
``<data>/streams/<name>.json`` or ``<data>/rules/<id>.json`` followed by the
manager's reconcile of that one name, so the caller learns the result.  A
stream the manager finds invalid, or a rule that could not start, is not
kept: the file goes back to what it held before (or goes away) and the
change is refused with the manager's reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from loader import jsonio
from loader.files import write_bytes_atomic, write_json_atomic
from loader.names import is_valid_name
from loader.rules.definitions import StreamDef
from loader.rules.reconciler import RuleReconciler, RuleState


class Refused(Exception):
    """A stream or rule change that was not kept; ``message`` says why (the manager's reason)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Exists(Refused):
    """A create of a stream or rule that is defined already."""


class InUse(Refused):
    """A stream that running rules read; ``users`` are their ids."""

    def __init__(self, message: str, users: list[str]) -> None:
        super().__init__(message)
        self.users = users


class BadName(Refused):
    """A name that cannot be a stream's or a rule's (it would not be a file name of ours)."""


class Unreadable(Refused):
    """The rule file on disk cannot be read as a JSON object (it was edited by hand).

    ``problem`` is the read or parse error, None when the file holds JSON that is not an object.
    """

    def __init__(self, path: Path, problem: str | None) -> None:
        what = f"cannot read the rule file ({problem})" if problem is not None else "the rule file is not a JSON object"
        super().__init__(f"{path}: {what}")
        self.path = path
        self.problem = problem


class DefinitionStore:
    """Writes and removes stream and rule files for a client; one change of each kind at a time."""

    def __init__(self, manager: RuleReconciler) -> None:
        self.manager = manager
        self._streams_lock = asyncio.Lock()
        self._rules_lock = asyncio.Lock()

    def stream_path(self, name: str) -> Path:
        return self.manager.streams_dir / f"{name}.json"

    def rule_path(self, rule_id: str) -> Path:
        return self.manager.rules_dir / f"{rule_id}.json"

    # ------------------------------------------------------------ streams

    async def put_stream(self, stream: StreamDef, create: bool) -> None:
        """Write the stream's file and apply it; ``Exists`` on a create of a known name, ``Refused`` if invalid."""
        async with self._streams_lock:
            path = self.stream_path(stream.name)
            if create and (stream.name in self.manager.streams or path.exists()):
                raise Exists(f"Create stream fails: Item {stream.name} already exists.")
            previous = None if create else _read_bytes(path)
            write_json_atomic(path, {"sql": stream.sql})
            await self.manager.reconcile_stream(stream.name)
            error = self.manager.stream_errors.get(stream.name)
            if error is not None:
                _restore(path, previous)
                await self.manager.reconcile_stream(stream.name)
                raise Refused(error)

    async def drop_stream(self, name: str, force: bool) -> None:
        """Remove the stream's file; ``InUse`` while a rule reads it (unless ``force``); an unknown name is fine."""
        async with self._streams_lock:
            users = self.stream_users(name)
            if users and not force:
                raise InUse(f"stream {name} has been referenced by other rules", users)
            if not is_valid_name(name):
                raise BadName(
                    f"invalid name {name}: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
                )
            path = self.stream_path(name)
            if path.is_file():
                path.unlink(missing_ok=True)
                await self.manager.reconcile_stream(name)

    def stream_users(self, name: str) -> list[str]:
        return sorted(rule_id for rule_id, entry in self.manager.rules.items() if self.manager.stream_of(entry) == name)

    # -------------------------------------------------------------- rules

    def rule_known(self, rule_id: str) -> bool:
        return rule_id in self.manager.rules or self.rule_path(rule_id).is_file()

    async def put_rule(self, rule_id: str, body: dict[str, Any], create: bool) -> None:
        """Write the rule's file and apply it; ``Exists`` on a create of a known id, ``Refused`` if it failed."""
        async with self._rules_lock:
            path = self.rule_path(rule_id)
            if create and (rule_id in self.manager.rules or path.exists()):
                raise Exists(f"rule {rule_id} already exists")
            previous = None if create else _read_bytes(path)
            write_json_atomic(path, body)
            await self.manager.reconcile_rule(rule_id)
            entry = self.manager.rules.get(rule_id)
            if entry is not None and entry.state == RuleState.ERROR:
                error = entry.error or "the rule could not start"
                _restore(path, previous)
                await self.manager.reconcile_rule(rule_id)
                raise Refused(f"rule {rule_id} could not start: {error}")

    async def delete_rule(self, rule_id: str) -> bool:
        """Remove the rule's file and stop the rule; False if there is no such rule."""
        async with self._rules_lock:
            if not self.rule_known(rule_id):
                return False
            self.rule_path(rule_id).unlink(missing_ok=True)
            await self.manager.reconcile_rule(rule_id)
            return True

    def read_rule(self, rule_id: str) -> dict[str, Any]:
        """The rule file as a JSON object; ``Unreadable`` naming the file and why not."""
        path = self.rule_path(rule_id)
        try:
            data = jsonio.loads(path.read_text(), strict=True)
        except (OSError, ValueError) as exc:
            raise Unreadable(path, str(exc)) from None
        if not isinstance(data, dict):
            raise Unreadable(path, None)
        return data

    async def trigger_rule(self, rule_id: str, run: bool, restart: bool) -> None:
        """Persist ``triggered`` in the rule file, apply it, and (re)start the rule if asked.

        ``Refused`` when the rule should run but could not start; ``Unreadable``
        when its file cannot be read.
        """
        async with self._rules_lock:
            data = self.read_rule(rule_id)
            changed = data.get("triggered", True) != run
            if changed:
                write_json_atomic(self.rule_path(rule_id), {**data, "triggered": run})
            await self.manager.reconcile_rule(rule_id)
            entry = self.manager.rules.get(rule_id)
            if run and not changed and entry is not None and (restart or entry.state != RuleState.RUNNING):
                await self.manager.restart_rule(rule_id)
            entry = self.manager.rules.get(rule_id)
            if run and entry is not None and entry.state == RuleState.ERROR:
                raise Refused(f"rule {rule_id} could not start: {entry.error}")


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _restore(path: Path, previous: bytes | None) -> None:
    """Put back what ``path`` held before a refused change: its bytes, or no file."""
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        write_bytes_atomic(path, previous)
