"""Structured log lines on stderr that the host can parse.

Every line is one JSON object: ``{"src": "sdk", "level": "info", "event":
"<message>", ...}`` plus the context keys ``symbol``, ``rule``, ``op``,
``instance`` when known.  The ``src`` marker lets the loader tell these lines
apart from whatever else a plugin writes (the keys: sdk/protocol/logline.py); stdout stays free for the plugin
author's own prints.

Context travels on a log record as the attribute ``sdk`` (a dict), set either
with ``extra={"sdk": {...}}`` or by the filter attached to a Context's logger.
Other ``extra=`` fields a plugin passes become keys of the line as well.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback

from sdk.protocol.logline import EVENT_KEY, EXC_KEY, LEVEL_KEY, MARKER, MARKER_KEY

#: Attributes every LogRecord has; anything else came from ``extra=`` and is shown.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "sdk"}
_installed = False


class JsonLineFormatter(logging.Formatter):
    """Render a record as a single JSON line (no embedded newlines)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            MARKER_KEY: MARKER,
            LEVEL_KEY: record.levelname.lower(),
            EVENT_KEY: record.getMessage(),
        }
        context = getattr(record, "sdk", None)
        if isinstance(context, dict):
            for key, value in context.items():
                line.setdefault(key, value)
        elif not record.name.startswith("sdk"):
            # A plugin's own module logger: say which one, there is no other context.
            line["logger"] = record.name
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line.setdefault(key, value)
        if record.exc_info:
            line[EXC_KEY] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(line, default=str)


class ContextFilter(logging.Filter):
    """Adds a symbol instance's context to every record of its logger."""

    def __init__(self, context: dict[str, object]) -> None:
        super().__init__()
        self.context = context

    def filter(self, record: logging.LogRecord) -> bool:
        existing = getattr(record, "sdk", None)
        record.sdk = {**self.context, **existing} if isinstance(existing, dict) else self.context
        return True


def install(level: int = logging.INFO) -> None:
    """Route the root logger to stderr as JSON lines; idempotent.

    The root logger (not only ``sdk``) is used so that a plugin's plain
    ``logging.info(...)`` also reaches the host in the parseable form.
    """
    global _installed
    if _installed:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    _installed = True


def context_logger(symbol: str, rule: str, op: str, instance: object) -> logging.Logger:
    """A real ``logging.Logger`` whose records carry this instance's context.

    Loggers are registered by name, so one name per instance keeps the
    context filters of different instances apart.
    """
    name = f"plugin.{symbol}.{rule}.{op}.{instance}"
    logger = logging.getLogger(name)
    if not logger.filters:
        context = {"symbol": symbol, "rule": rule, "op": op, "instance": instance}
        logger.addFilter(ContextFilter(context))
    return logger
