"""The installed portable-loader unit seen from inside the container: state, journal, processes."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.system.container import Container, Result

UNIT = "portable-loader"
SERVICE_USER = "portable-loader"
T = TypeVar("T")


class Unit:
    def __init__(self, container: Container) -> None:
        self.container = container

    def run(self, script: str, timeout: float = 120.0) -> Result:
        return self.container.run(script, timeout=timeout)

    def show(self, *props: str) -> dict[str, str]:
        out = self.run(f"systemctl show {UNIT} " + " ".join(f"-p {p}" for p in props)).check().stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self) -> int:
        return int(self.show("MainPID")["MainPID"])

    def entries(self, *filters: str) -> list[dict[str, Any]]:
        """The unit's journal entries (journalctl -o json), optionally narrowed by journalctl arguments.

        ``--all``: without it, journalctl writes null for any field over 4 KiB,
        such as the MESSAGE of a stack dump.
        """
        args = " ".join(shlex.quote(f) for f in filters)
        out = self.run(f"journalctl -u {UNIT} -o json --all --no-pager {args}").check().stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def events(self) -> list[dict[str, Any]]:
        """The loader's JSON events in the journal; systemd's own lines and any raw text are left out."""
        events = []
        for entry in self.entries():
            message = entry.get("MESSAGE")
            if not isinstance(message, str) or not message.startswith("{"):
                continue
            try:
                event = json.loads(message)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
        return events

    def wait_for(self, probe: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.5) -> T:
        """Poll ``probe`` until it answers something truthy; fail naming ``what`` and the journal's tail."""
        deadline = time.monotonic() + timeout
        while True:
            answer = probe()
            if answer:
                return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f}s for {what}; journal tail:\n{self.journal_tail()}")
            time.sleep(every)

    def within(self, probe: Callable[[], object], seconds: float, every: float = 0.2) -> bool:
        """Whether ``probe`` turns true within ``seconds``: for what must *not* happen in a window."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if probe():
                return True
            time.sleep(every)
        return bool(probe())

    def wait_event(
        self, what: str, match: Callable[[dict[str, Any]], bool], timeout: float = 60.0, after: int = 0
    ) -> dict[str, Any]:
        """The first loader event past the first ``after`` ones that ``match`` accepts."""

        def probe() -> dict[str, Any] | None:
            return next((e for e in self.events()[after:] if match(e)), None)

        return self.wait_for(probe, what, timeout)

    def journal_tail(self, lines: int = 40) -> str:
        return self.run(f"journalctl -u {UNIT} -o cat --no-pager -n {lines}").stdout

    def processes(self) -> list[tuple[int, int, str]]:
        """(pid, parent pid, command line) of every process of the service's user."""
        out = self.run(f"ps -u {SERVICE_USER} -o pid=,ppid=,args= || true").stdout
        rows = []
        for line in out.splitlines():
            pid, ppid, args = line.split(None, 2)
            rows.append((int(pid), int(ppid), args))
        return rows
