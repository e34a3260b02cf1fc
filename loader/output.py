"""A plugin's stdout and stderr, line by line, as log events.

Each line becomes one event carrying the plugin's name and pid, so a
plugin's own output can be found in the loader's logs (journald) next to the
loader's decisions about it.  Lines that our ``sdk`` writes are JSON objects
with ``"src": "sdk"``; they keep their level, message and symbol context.
The last lines are kept for the crash report.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from loader import jsonio
from loader.log import get_logger

TAIL_LINES = 20
_LEVELS = {"debug", "info", "warning", "error", "critical"}
#: Keys of an sdk line that the loader's own event already has, or sets itself.
_RESERVED = {"src", "level", "event", "timestamp", "plugin", "pid", "message"}


class OutputTail:
    """The last lines a plugin printed, on either stream."""

    def __init__(self, size: int = TAIL_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=size)

    def add(self, line: str) -> None:
        self._lines.append(line)

    def lines(self) -> list[str]:
        return list(self._lines)

    def clear(self) -> None:
        self._lines.clear()


def _sdk_record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{") or '"src"' not in line:
        return None
    try:
        record = jsonio.loads(line)
    except ValueError:
        return None
    if isinstance(record, dict) and record.get("src") == "sdk":
        return record
    return None


def emit_line(plugin: str, pid: int, stream: str, line: str) -> None:
    """Log one line of plugin output as ``plugin.log`` (sdk) or ``plugin.output`` (anything else)."""
    log = get_logger(plugin=plugin, pid=pid)
    record = _sdk_record(line)
    if record is None:
        log.info("plugin.output", stream=stream, line=line)
        return
    level = str(record.get("level", "info")).lower()
    context = {k: v for k, v in record.items() if k not in _RESERVED}
    method = getattr(log, level if level in _LEVELS else "info")
    method("plugin.log", message=record.get("event", ""), **context)


async def pump(reader: asyncio.StreamReader, plugin: str, pid: int, stream: str, tail: OutputTail) -> None:
    """Read ``reader`` to its end, logging and remembering each line."""
    while True:
        try:
            raw = await reader.readline()
        except ValueError:  # a line longer than the limit: take what is buffered
            raw = await reader.read(1 << 16)
        if not raw:
            return
        line = raw.decode(errors="replace").rstrip("\r\n")
        tail.add(line)
        emit_line(plugin, pid, stream, line)
