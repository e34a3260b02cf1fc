"""Waiting for an event in a test: one poll loop for every test.

Tests wait for what they expect to happen (a log event, a file, a count), not
for a fixed time; this is how, written once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str | None = None,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that.

    After ``timeout`` seconds: with ``what``, fail the test naming it (and
    ``detail()``, what was seen instead); without, return the last value,
    so ``assert wait_until(...)`` reads naturally.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if what is not None:
                seen = f"; {detail()}" if detail is not None else ""
                raise AssertionError(f"{what} not met within {timeout:g}s{seen}")
            return value
        time.sleep(interval)
