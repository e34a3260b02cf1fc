"""A plugin's stdout and stderr, line by line, as log events.

Each line becomes one event carrying the plugin's name and pid, so a
plugin's own output can be found in the loader's logs (journald) next to the
loader's decisions about it.  Lines that our ``sdk`` writes are JSON objects
with ``"src": "sdk"`` (sdk/protocol/logline.py); they keep their level, message and symbol context.
The last lines are kept for the crash report.

A plugin that floods its output must not flood the loader's log (journald
rate-limits a unit, and would then drop the loader's own events too) nor
spend the loader's CPU on rendering it: each process gets ``LINES_PER_S``
logged lines a second, with bursts of ``BURST_LINES``.  Lines past that are
still read and kept in the tail, and counted; one ``plugin.output_suppressed``
event says how many were dropped, at most every ``SUMMARY_EVERY_S`` while
the flood lasts and once more when the stream ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from loader import jsonio
from loader.log import get_logger
from sdk.protocol.logline import EVENT_KEY, LEVEL_KEY, MARKER, MARKER_KEY

TAIL_LINES = 20
LINES_PER_S = 200
BURST_LINES = 1000
SUMMARY_EVERY_S = 10.0
_LEVELS = {"debug", "info", "warning", "error", "critical"}
#: Keys of an sdk line that the loader's own event already has, or sets itself.
_RESERVED = {MARKER_KEY, LEVEL_KEY, EVENT_KEY, "timestamp", "plugin", "pid", "message"}
_MARKER_QUOTED = f'"{MARKER_KEY}"'


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


class OutputLimiter:
    """A token bucket of log lines for one plugin process (both its streams), and what it held back."""

    def __init__(
        self, rate: float = LINES_PER_S, burst: int = BURST_LINES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._filled_at = clock()
        self._summarised_at = self._filled_at
        self.suppressed_lines = 0
        self.suppressed_bytes = 0

    def allow(self, size: int) -> bool:
        """Whether a line of ``size`` bytes may be logged now; counts it if not."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.suppressed_lines += 1
        self.suppressed_bytes += size
        return False

    def summary(self, final: bool = False) -> tuple[int, int] | None:
        """``(lines, bytes)`` held back since the last summary, when one is due (always when ``final``)."""
        now = self._clock()
        if not self.suppressed_lines or (not final and now - self._summarised_at < SUMMARY_EVERY_S):
            return None
        counts = self.suppressed_lines, self.suppressed_bytes
        self.suppressed_lines = self.suppressed_bytes = 0
        self._summarised_at = now
        return counts


def _sdk_record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{") or _MARKER_QUOTED not in line:
        return None
    try:
        record = jsonio.loads(line)
    except ValueError:
        return None
    if isinstance(record, dict) and record.get(MARKER_KEY) == MARKER:
        return record
    return None


def emit_line(plugin: str, pid: int, stream: str, line: str) -> None:
    """Log one line of plugin output as ``plugin.log`` (sdk) or ``plugin.output`` (anything else)."""
    log = get_logger(plugin=plugin, pid=pid)
    record = _sdk_record(line)
    if record is None:
        log.info("plugin.output", stream=stream, line=line)
        return
    level = str(record.get(LEVEL_KEY, "info")).lower()
    context = {k: v for k, v in record.items() if k not in _RESERVED}
    method = getattr(log, level if level in _LEVELS else "info")
    method("plugin.log", message=record.get(EVENT_KEY, ""), **context)


async def pump(
    reader: asyncio.StreamReader,
    plugin: str,
    pid: int,
    stream: str,
    tail: OutputTail,
    limiter: OutputLimiter | None = None,
) -> None:
    """Read ``reader`` to its end, remembering each line and logging those ``limiter`` lets through."""
    limiter = limiter if limiter is not None else OutputLimiter()
    while True:
        try:
            raw = await reader.readline()
        except ValueError:  # a line longer than the limit: take what is buffered
            raw = await reader.read(1 << 16)
        if not raw:
            _report_suppressed(limiter.summary(final=True), plugin, pid)
            return
        line = raw.decode(errors="replace").rstrip("\r\n")
        tail.add(line)
        if limiter.allow(len(raw)):
            emit_line(plugin, pid, stream, line)
        else:
            _report_suppressed(limiter.summary(), plugin, pid)


def _report_suppressed(counts: tuple[int, int] | None, plugin: str, pid: int) -> None:
    if counts is not None:
        get_logger(plugin=plugin, pid=pid).warning(
            "plugin.output_suppressed",
            lines=counts[0],
            bytes=counts[1],
            reason=f"the plugin printed more than {LINES_PER_S} lines/s (bursts of {BURST_LINES}); "
            "these lines were not logged",
        )
