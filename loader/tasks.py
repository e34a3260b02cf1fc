"""Long-running tasks survive their own exceptions.

The periodic rescan, the debouncers' reconcile calls, the watcher's event
handlers, each plugin's control reader and each rule's worker thread run
for the loader's whole life.  An exception nobody foresaw (a bug, an input
no check caught) used to end such a task silently and for good: no more
rescans, a plugin whose every command times out, a rule that shows
``running`` with no records.

Each of them now catches everything, logs one ``task.failed`` event with the
traceback, waits a little longer after each consecutive failure (so a
failure that repeats cannot flood the log or spin a core) and carries on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from loader.log import get_logger

#: Delay after the first consecutive failure; it doubles up to ``BACKOFF_MAX_S``.
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 30.0


class Backoff:
    """Consecutive failures of one task, and how long to wait after the latest."""

    def __init__(self, initial_s: float = BACKOFF_INITIAL_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0

    def failed(self) -> float:
        """Count a failure; the delay to wait before carrying on."""
        self.failures += 1
        return min(self.initial_s * 2.0 ** min(self.failures - 1, 32), self.max_s)

    def succeeded(self) -> None:
        self.failures = 0


def report_failure(task: str, exc: BaseException, backoff: Backoff | None = None, **context: Any) -> float:
    """Log ``task.failed`` with the traceback; return the delay to wait (0 without a backoff)."""
    delay = backoff.failed() if backoff is not None else 0.0
    get_logger(**context).error(
        "task.failed",
        task=task,
        error=f"{type(exc).__name__}: {exc}",
        failures=backoff.failures if backoff is not None else 1,
        retry_in_s=round(delay, 3),
        exc_info=exc,
    )
    return delay


async def repeat(task: str, body: Callable[[], Awaitable[None]], interval: Callable[[], float]) -> None:
    """Run ``body`` every ``interval()`` seconds until cancelled; a failure is reported and backed off."""
    backoff = Backoff()
    delay = 0.0
    while True:
        await asyncio.sleep(interval() + delay)
        try:
            await body()
        except Exception as exc:  # the loop must outlive any one pass
            delay = report_failure(task, exc, backoff)
        else:
            backoff.succeeded()
            delay = 0.0
