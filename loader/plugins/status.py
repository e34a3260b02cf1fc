"""Per-plugin status, held in one place.

The supervisor and the reconciler write it; the REST API, the CLI and
sd_notify read it.  A status is plain data so any reader can snapshot it
without touching processes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class PluginState(StrEnum):
    """The states a plugin can be in; the state machine that moves between them is loader/plugins/states.py."""

    WAITING = "waiting"  # folder incomplete (still being copied?), not an error yet
    BUILDING = "building"  # its Python venv is being built from requirements.txt
    STARTING = "starting"  # process spawned, handshake pending
    PROBATION = "probation"  # handshaken; must stay up for updates.probation_s to count as good
    RUNNING = "running"  # passed probation
    RESTARTING = "restarting"  # process exited or hung; a restart is scheduled
    CRASHLOOP = "crashloop"  # restarted too often in a short window; still retried, slowly
    ROLLED_BACK = "rolled_back"  # a new version failed; the last good one runs again
    INVALID = "invalid"  # the folder cannot be loaded; last_error says why
    STOPPED = "stopped"  # nothing runs: not loaded yet, unloaded, or stopping


#: Every state, in the order readers list them.
STATES = tuple(PluginState)


@dataclass
class PluginStatus:
    name: str
    state: PluginState = PluginState.STOPPED
    version: str | None = None
    previous_version: str | None = None
    digest: str | None = None
    pid: int | None = None
    restarts: int = 0
    last_error: str | None = None
    #: A version that was refused or failed and rolled back, until the folder changes again.
    failed_version: str | None = None
    failed_error: str | None = None
    since: float = field(default_factory=time.time)
    symbols: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StatusBoard:
    """Every plugin's status by name."""

    def __init__(self) -> None:
        self._plugins: dict[str, PluginStatus] = {}

    def get(self, name: str) -> PluginStatus | None:
        return self._plugins.get(name)

    def ensure(self, name: str) -> PluginStatus:
        status = self._plugins.get(name)
        if status is None:
            status = self._plugins[name] = PluginStatus(name=name)
        return status

    def set_state(self, name: str, state: PluginState, **fields: Any) -> PluginStatus:
        """Change state (resetting ``since`` only when the state really changes) and fields."""
        status = self.ensure(name)
        if status.state != state:
            status.state = state
            status.since = time.time()
        for key, value in fields.items():
            setattr(status, key, value)
        return status

    def remove(self, name: str) -> None:
        self._plugins.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def snapshot(self) -> list[dict[str, Any]]:
        return [self._plugins[name].as_dict() for name in self.names()]

    def count(self, state: PluginState) -> int:
        return sum(1 for s in self._plugins.values() if s.state == state)
