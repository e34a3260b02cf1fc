"""Host-side adapters that make plugin symbols usable by rules (the data plane).

The data plane sees a plugin only as a ``RunningPlugin``: what it needs to
open a symbol's channel, start and stop the symbol, tell one process from the
next and report a plugin that stopped answering.  ``PluginSupervisor``
provides it; tests may pass a small fake.
"""

from __future__ import annotations

from typing import Any, Protocol

from loader.plugins.manifest import PluginSpec
from loader.plugins.runner import Process
from sdk.protocol.control import Control


class RunningPlugin(Protocol):
    """A plugin as the data plane uses it (sources, sinks, function handles)."""

    @property
    def name(self) -> str:
        """The plugin's name: part of every socket address of its symbols."""
        ...

    @property
    def spec(self) -> PluginSpec:
        """The version running now (its folder, digest, version)."""
        ...

    @property
    def generation(self) -> int:
        """Bumped for every process launched: a channel compares it to tell that its process is gone."""
        ...

    @property
    def batch_max_records(self) -> int:
        """Most records one batch message to the current process may hold; 0: send no batches."""
        ...

    @property
    def ack_window(self) -> int:
        """Most messages a sink with requireAck may have unacknowledged in the current process (1 for
        eKuiper SDK plugins)."""
        ...

    @property
    def process(self) -> Process | None:
        """The current process (for its pid in log lines), None between processes."""
        ...

    async def start_symbol(self, key: str, control: dict[str, Any]) -> None:
        """Start a symbol now and on every new process, until ``stop_symbol``."""
        ...

    async def stop_symbol(self, key: str) -> None: ...

    def mark_unhealthy(self, reason: str) -> None:
        """The plugin failed to answer (a call timed out, a sink stalled): restart it. Thread-safe."""
        ...


class _Channel(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...


async def open_and_start(channel: _Channel, supervisor: RunningPlugin, control: Control) -> None:
    """Listen on the symbol's host socket, then start the symbol (replayed on every new process).

    The order is the protocol's: the plugin dials our socket while handling
    ``start``.  If the start fails, the socket is closed again.  The
    supervisor keeps the Control as the object sent on the wire
    (``Control.to_dict``), under the instance's key, to replay it.
    """
    channel.open()
    try:
        await supervisor.start_symbol(control.key, control.to_dict())
    except Exception:
        channel.close()
        raise
