"""Host-side adapters that make plugin symbols usable by rules (the data plane)."""

from __future__ import annotations

from typing import Any, Protocol

from sdk.protocol.control import Control


class _Channel(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...


async def open_and_start(channel: _Channel, supervisor: Any, control: Control) -> None:
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
