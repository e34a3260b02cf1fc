"""Fixtures of the sdk tests."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def hold_low_descriptors() -> Iterator[Callable[[], None]]:
    """Takes every free descriptor below 1100 when called, so the next sockets are numbered above 1024,
    as in a loader running many rules; call it right before (other tests' threads may free some meanwhile)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    held: list[int] = []

    def hold() -> None:
        while True:
            held.append(os.dup(0))
            if held[-1] >= 1100:
                return

    try:
        yield hold
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
