"""Structured logging for the loader.

Every decision the loader makes is one event with a stable name (see
docs/logging.md) and stable keys (``plugin``, ``version``, ``pid``, ``symbol``,
``rule``, ``reason``, ``error``).  Output is JSON lines when stdout is not a
terminal (journald, pipes, tests) and a readable console format on a terminal;
under systemd each event goes to journald with its priority and fields.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from loader.journal import SOCKET_PATH, JournalSocket, entry_fields, stream_is_journal

LOG_FORMATS = ("json", "console", "auto")
#: Overrides journald's socket path (tests bind their own socket).
JOURNAL_SOCKET_ENV = "PORTABLE_LOADER_JOURNAL_SOCKET"

#: The minimum level, read by a processor at each event (not frozen into
#: loggers bound earlier), so a SIGHUP reload changes it for every logger.
_min_level = logging.INFO
_LEVEL_NUMBERS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "exception": logging.ERROR,
}


def _drop_below_level(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _LEVEL_NUMBERS.get(method, logging.INFO) < _min_level:
        raise structlog.DropEvent
    return event


class EventOutput:
    """Where rendered events go: a stream that never raises, or journald with fields.

    A closed stdout (a reader that went away, journald restarting) must not
    stop the service or its threads, so write errors are swallowed.  One
    ``write`` per line under a lock: lines from threads never interleave.
    The lock is re-entrant so a signal handler that logs cannot deadlock.
    """

    def __init__(self, stream: TextIO, journal: JournalSocket | None = None) -> None:
        self._stream = stream
        self.journal = journal
        self._lock = threading.RLock()

    def msg(self, message: str, level: str = "info", event: Mapping[str, Any] | None = None) -> None:
        if self.journal is not None and self.journal.send(entry_fields(event or {}, level, message)):
            return
        with self._lock:
            try:
                self._stream.write(message + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass

    debug = info = warning = warn = error = critical = exception = log = msg


def _output_stage(
    renderer: Any, with_fields: bool
) -> Callable[[Any, str, MutableMapping[str, Any]], tuple[tuple[str], dict[str, Any]]]:
    """The last processor: render the line, and hand the event's fields along for the journal."""

    def render(logger: Any, method: str, event: MutableMapping[str, Any]) -> tuple[tuple[str], dict[str, Any]]:
        level = event.get("level", method)
        line: str = renderer(logger, method, event)  # both renderers make a str
        return (line,), {"level": level, "event": event if with_fields else None}

    return render


def _journal_for(out: TextIO) -> JournalSocket | None:
    """journald's socket when ``out`` is the stream systemd connected to the journal."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if not stream_is_journal(os.environ.get("JOURNAL_STREAM"), fd):
        return None
    return JournalSocket(os.environ.get(JOURNAL_SOCKET_ENV, SOCKET_PATH))


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once for the whole process.

    ``fmt`` is ``json``, ``console`` or ``auto`` (console on a terminal, JSON
    otherwise).  The stream is resolved at call time so tests can capture it.
    When that stream is journald's (``$JOURNAL_STREAM``), events are sent with
    journald's native protocol instead (loader/journal.py), falling back to
    the stream.
    """
    out = stream if stream is not None else sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    global _min_level
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    _min_level = numeric
    journal = _journal_for(out)
    output = EventOutput(out, journal)
    structlog.configure(
        processors=[
            _drop_below_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _output_stage(renderer, with_fields=journal is not None),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=lambda *args: output,
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger with ``bound`` keys attached to every event it emits."""
    # structlog types get_logger as Any; configure_logging makes its loggers filtering bound loggers.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(**bound)
    return logger
