"""Per-node counters of a running rule, named as eKuiper names them.

Counters are plain integers bumped by the one data-plane thread that runs the
node; readers (REST, status) only read them, so no lock is needed.
"""

from __future__ import annotations

import time
from typing import Any


def now_ms() -> int:
    """Milliseconds since the epoch, as eKuiper's metrics give times."""
    return int(time.time() * 1000)


class NodeMetrics:
    """Counters of one node of a rule: a source, an operator or a sink."""

    __slots__ = (
        "prefix",
        "records_in",
        "records_out",
        "exceptions",
        "last_exception",
        "last_exception_time",
        "last_in_time",
        "last_out_time",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.records_in = 0
        self.records_out = 0
        self.exceptions = 0
        self.last_exception = ""
        self.last_exception_time = 0
        #: When a record last came in / went out (ms since the epoch, 0: never): "is anything flowing?"
        self.last_in_time = 0
        self.last_out_time = 0

    def took(self, count: int, now_ms: int) -> None:
        """``count`` records came in."""
        self.records_in += count
        self.last_in_time = now_ms

    def gave(self, count: int, now_ms: int) -> None:
        """``count`` records went out (none: nothing changes)."""
        if count:
            self.records_out += count
            self.last_out_time = now_ms

    def error(self, text: str) -> None:
        self.exceptions += 1
        self.last_exception = text
        self.last_exception_time = int(time.time() * 1000)

    def as_dict(self) -> dict[str, Any]:
        p = self.prefix
        return {
            f"{p}_records_in_total": self.records_in,
            f"{p}_records_out_total": self.records_out,
            f"{p}_exceptions_total": self.exceptions,
            f"{p}_last_exception": self.last_exception,
            f"{p}_last_exception_time": self.last_exception_time,
            f"{p}_last_record_in_time": self.last_in_time,
            f"{p}_last_record_out_time": self.last_out_time,
        }
