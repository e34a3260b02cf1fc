"""A plugin's lifecycle: its states, the legal moves between them, and the one way to move.

The state a plugin is in is held here, by the component that owns the
plugin (the reconciler while no process exists, the supervisor while one
does), never read back from the status board: the board is a projection for
REST, the CLI and sd_notify.  Every change goes through ``Lifecycle.move``,
which refuses a move the table below does not allow (a bug, not a runtime
condition), logs ``plugin.state`` and publishes to the board.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loader.log import get_logger
from loader.plugins.status import PluginState, StatusBoard

S = PluginState

#: Every legal move.  Staying in a state (a new error for an invalid folder, a
#: further restart) is always allowed and is not a transition.
TRANSITIONS: dict[PluginState, frozenset[PluginState]] = {
    S.STOPPED: frozenset({S.WAITING, S.BUILDING, S.STARTING, S.INVALID}),
    S.WAITING: frozenset({S.BUILDING, S.STARTING, S.INVALID, S.STOPPED}),
    S.BUILDING: frozenset({S.WAITING, S.STARTING, S.INVALID, S.STOPPED}),
    S.INVALID: frozenset({S.WAITING, S.BUILDING, S.STARTING, S.STOPPED}),
    S.STARTING: frozenset({S.PROBATION, S.ROLLED_BACK, S.RESTARTING, S.CRASHLOOP, S.STOPPED}),
    S.PROBATION: frozenset({S.RUNNING, S.STARTING, S.RESTARTING, S.CRASHLOOP, S.STOPPED}),
    S.RUNNING: frozenset({S.STARTING, S.RESTARTING, S.CRASHLOOP, S.STOPPED}),
    S.RESTARTING: frozenset({S.STARTING, S.STOPPED}),
    S.CRASHLOOP: frozenset({S.STARTING, S.STOPPED}),
    S.ROLLED_BACK: frozenset({S.RUNNING, S.STARTING, S.RESTARTING, S.CRASHLOOP, S.STOPPED}),
}

#: States in which a process is up and answers commands.
SERVING = frozenset({S.PROBATION, S.RUNNING, S.ROLLED_BACK})


class IllegalTransition(RuntimeError):
    """A move the table does not allow: a bug in the caller."""


def check_move(old: PluginState, new: PluginState) -> None:
    """Raise IllegalTransition unless ``old -> new`` is in TRANSITIONS (or ``old == new``)."""
    if old != new and new not in TRANSITIONS[old]:
        raise IllegalTransition(f"plugin state {old} cannot become {new}")


@dataclass
class Lifecycle:
    """One plugin's current state, owned by whoever manages the plugin."""

    name: str
    board: StatusBoard
    state: PluginState = S.STOPPED
    history: list[PluginState] = field(default_factory=list)

    def move(self, new: PluginState, reason: str | None = None, **fields: Any) -> None:
        """The transition function: guard, log, publish ``fields`` with the state to the board."""
        old = self.state
        check_move(old, new)
        if old != new:
            self.state = new
            self.history.append(new)
            keys: dict[str, Any] = {"version": fields["version"]} if fields.get("version") else {}
            if reason:
                keys["reason"] = reason
            get_logger(plugin=self.name).debug("plugin.state", **{"from": str(old), "to": str(new)}, **keys)
        self.board.set_state(self.name, new, **fields)

    def publish(self, **fields: Any) -> None:
        """Update fields on the board without a state change."""
        self.board.set_state(self.name, self.state, **fields)

    @property
    def serving(self) -> bool:
        return self.state in SERVING
