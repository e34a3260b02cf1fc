"""Per-node counters of a running rule, named as eKuiper names them.

Counters are plain integers bumped by the one data-plane thread that runs the
node; readers (REST, status) only read them, so no lock is needed.
"""

from __future__ import annotations

import time
from typing import Any


class NodeMetrics:
    """Counters of one node of a rule: a source, an operator or a sink."""

    __slots__ = ("prefix", "records_in", "records_out", "exceptions", "last_exception", "last_exception_time")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.records_in = 0
        self.records_out = 0
        self.exceptions = 0
        self.last_exception = ""
        self.last_exception_time = 0

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
        }
