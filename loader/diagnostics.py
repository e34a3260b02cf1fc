"""Faults and stack dumps as log events, never as raw text in the log stream.

Python writes an uncaught exception (main thread, other threads, a failed
asyncio task nobody awaited), a warning or a library's log record straight
to stderr as several plain lines; faulthandler's dump is plain text too.  In
a stream of JSON events those lines break every ``jq`` pipeline and cannot
be matched by field in the journal.  Here each of them becomes one event:

- ``loader.uncaught_exception`` (``sys.excepthook``), ``loader.thread_exception``
  (``threading.excepthook``), ``loader.task_exception`` (the event loop's
  exception handler): the traceback is in ``exception``.
- ``loader.python_warning`` and ``loader.library_log`` for ``warnings`` and
  stdlib ``logging`` records that have no handler of their own.
- ``loader.stack_dump`` on SIGUSR1: every thread's stack as a list of frames.

The SIGUSR1 handler only starts a thread that takes the dump, so it never
runs logging code inside whatever the main thread was doing.  A main thread
stuck in C code that holds the GIL cannot be dumped this way (faulthandler
could); the systemd watchdog restarts such a loader.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
import traceback
import warnings
from types import FrameType, TracebackType
from typing import Any

from loader.log import get_logger

STACK_DUMP_SIGNAL = signal.SIGUSR1


def install_exception_hooks() -> None:
    """Route uncaught exceptions, warnings and unhandled library log records to events."""
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    warnings.showwarning = _showwarning
    root = logging.getLogger()
    if not any(isinstance(h, LogRecordsAsEvents) for h in root.handlers):
        root.addHandler(LogRecordsAsEvents("loader.library_log"))


def install_loop_handler(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_exception_handler(_loop_exception)


def install_stack_dump() -> None:
    """SIGUSR1 logs ``loader.stack_dump`` (call from the main thread)."""
    signal.signal(STACK_DUMP_SIGNAL, _on_dump_signal)


def thread_stacks(frames: dict[int, FrameType], threads: list[threading.Thread]) -> list[dict[str, Any]]:
    """Each thread's name and stack (outermost call first) as plain data."""
    by_ident = {t.ident: t for t in threads}
    out = []
    for ident, frame in sorted(frames.items()):
        thread = by_ident.get(ident)
        stack = [
            f"{f.filename}:{f.lineno} in {f.name}" + (f": {f.line}" if f.line else "")
            for f in traceback.extract_stack(frame)
        ]
        out.append(
            {
                "thread": thread.name if thread is not None else f"thread-{ident}",
                "ident": ident,
                "daemon": thread.daemon if thread is not None else None,
                "stack": stack,
            }
        )
    return out


def log_stack_dump() -> None:
    frames = sys._current_frames()
    frames.pop(threading.get_ident(), None)  # the dumping thread itself is of no interest
    stacks = thread_stacks(frames, threading.enumerate())
    get_logger().info("loader.stack_dump", reason="SIGUSR1", thread_count=len(stacks), threads=stacks)


def _on_dump_signal(signum: int, frame: FrameType | None) -> None:
    threading.Thread(target=log_stack_dump, name="stack-dump", daemon=True).start()


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    get_logger().critical("loader.uncaught_exception", error=f"{kind.__name__}: {value}", exc_info=(kind, value, tb))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else None
    get_logger().error(
        "loader.thread_exception",
        thread=name,
        error=f"{args.exc_type.__name__}: {args.exc_value}",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


#: asyncio reports a failed accept (out of file descriptors) on every retry, once a second per
#: listening socket: summarised as one ``api.accept_failed`` per this many seconds.
ACCEPT_REPORT_EVERY_S = 60.0
_accept_failures = {"count": 0, "last": -ACCEPT_REPORT_EVERY_S}


def _accept_failed(context: dict[str, Any]) -> bool:
    """Summarise "socket.accept() out of system resource" instead of a traceback each time; True if it was one."""
    if context.get("message") != "socket.accept() out of system resource":
        return False
    _accept_failures["count"] += 1
    now = time.monotonic()
    if now - _accept_failures["last"] >= ACCEPT_REPORT_EVERY_S:
        exc = context.get("exception")
        get_logger().error(
            "api.accept_failed",
            error=f"{type(exc).__name__}: {exc}" if exc else None,
            failures=_accept_failures["count"],
            period_s=ACCEPT_REPORT_EVERY_S,
            reason="out of file descriptors (or memory); new connections wait; check "
            "LimitNOFILE and limits.rest_max_connections",
        )
        _accept_failures["count"], _accept_failures["last"] = 0, now
    return True


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if _accept_failed(context):
        return
    exc = context.get("exception")
    task = context.get("task") or context.get("future")
    name = task.get_name() if isinstance(task, asyncio.Task) else None
    fields: dict[str, Any] = {"message": context.get("message"), "task": name}
    if exc is not None:
        fields["error"] = f"{type(exc).__name__}: {exc}"
        fields["exc_info"] = (type(exc), exc, exc.__traceback__)
    get_logger().error("loader.task_exception", **fields)


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    get_logger().warning(
        "loader.python_warning", category=category.__name__, error=str(message), file=f"{filename}:{lineno}"
    )


class LogRecordsAsEvents(logging.Handler):
    """Stdlib log records as one structured event each, named ``event``: warnings as warnings,
    errors (with their traceback) as errors.  The loader's own stdlib fallback and uvicorn's
    logger both use it, so no library writes a raw line."""

    def __init__(self, event: str, level: int = logging.WARNING) -> None:
        super().__init__(level=level)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        method = "error" if record.levelno >= logging.ERROR else "warning"
        getattr(get_logger(), method)(self.event, logger=record.name, message=message, exc_info=record.exc_info or None)
