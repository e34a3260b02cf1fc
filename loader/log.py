"""Structured logging for the loader.

Every decision the loader makes is one event with a stable name (see
docs/logging.md) and stable keys (``plugin``, ``version``, ``pid``, ``symbol``,
``rule``, ``reason``, ``error``).  Output is JSON lines when stdout is not a
terminal (journald, pipes, tests) and a readable console format on a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LOG_FORMATS = ("json", "console", "auto")

#: The minimum level, read by a processor at each event (not frozen into
#: loggers bound earlier), so a SIGHUP reload changes it for every logger.
_min_level = logging.INFO
_LEVEL_NUMBERS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                  "error": logging.ERROR, "critical": logging.CRITICAL, "exception": logging.ERROR}


def _drop_below_level(logger: Any, method: str, event: dict) -> dict:
    if _LEVEL_NUMBERS.get(method, logging.INFO) < _min_level:
        raise structlog.DropEvent
    return event


class _SafeStream:
    """A log stream that never raises: a closed stdout (a reader that went
    away, journald restarting) must not stop the service or its threads."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        try:
            self._stream.write(text)
        except (OSError, ValueError):
            pass

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once for the whole process.

    ``fmt`` is ``json``, ``console`` or ``auto`` (console on a terminal, JSON
    otherwise).  The stream is resolved at call time so tests can capture it.
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
    structlog.configure(
        processors=[
            _drop_below_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=_SafeStream(out)),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger with ``bound`` keys attached to every event it emits."""
    return structlog.get_logger().bind(**bound)
