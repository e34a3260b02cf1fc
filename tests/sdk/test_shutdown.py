"""The plugin process's reason to end (``sdk.plugin.Shutdown``), waited for from the main thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sdk.plugin import Shutdown


def test_wait_times_out_then_sees_a_request() -> None:
    shutdown = Shutdown()
    started = time.monotonic()
    assert not shutdown.wait(0.05)
    assert time.monotonic() - started >= 0.05
    threading.Timer(0.05, shutdown.request, args=(3,)).start()
    assert shutdown.wait(5.0)
    assert shutdown.code == 3


def test_wait_works_on_a_descriptor_above_1024(hold_low_descriptors: Callable[[], None]) -> None:
    """A plugin that opened many files before its shutdown pipe was made; ``select`` would refuse it."""
    hold_low_descriptors()
    shutdown = Shutdown()
    shutdown.request()
    assert shutdown.wait(1.0)
