"""The plugin side of each symbol kind: running instances of sources, sinks and functions.

One module per kind, as the host's data plane has one adapter per kind:
``source.py``, ``sink.py`` (with the ack window's gate), ``function.py``;
``common.py`` holds what the three share (building the user's symbol, the
start error and its text, the error log that reports a failing symbol once).

Each runtime owns its sockets and one thread.  ``start`` runs in the control
thread and does everything that can fail (build, configure, connect) so the
start command's reply tells the host whether the instance really runs;
``stop`` closes the user's symbol and then its sockets, once the thread that
uses them has ended (``channels.close_after``).
"""

from __future__ import annotations

from collections.abc import Callable

from sdk.api import Factory
from sdk.args import RuntimeArgs
from sdk.protocol.control import Control
from sdk.runtimes.common import Runtime, StartError, error_text
from sdk.runtimes.function import FunctionRuntime
from sdk.runtimes.sink import AckGate, SinkRuntime, requires_ack
from sdk.runtimes.source import SourceRuntime

__all__ = [
    "RUNTIMES",
    "AckGate",
    "FunctionRuntime",
    "Runtime",
    "SinkRuntime",
    "SourceRuntime",
    "StartError",
    "error_text",
    "requires_ack",
]

RUNTIMES: dict[str, Callable[[Control, Factory, RuntimeArgs], Runtime]] = {
    "source": SourceRuntime,
    "sink": SinkRuntime,
    "func": FunctionRuntime,
}
