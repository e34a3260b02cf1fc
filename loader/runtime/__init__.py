"""Host-side adapters that make plugin symbols usable by rules (the data plane)."""

from __future__ import annotations

from typing import Any, Protocol


class _Channel(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...


async def open_and_start(channel: _Channel, supervisor: Any, key: str, control: dict) -> None:
    """Listen on the symbol's host socket, then start the symbol (replayed on every new process).

    The order is the protocol's: the plugin dials our socket while handling
    ``start``.  If the start fails, the socket is closed again.
    """
    channel.open()
    try:
        await supervisor.start_symbol(key, control)
    except Exception:
        channel.close()
        raise
