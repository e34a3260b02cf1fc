"""A bounded buffer of records between a source and one rule.

The source's receiving thread must keep reading: eKuiper's SDK drops a record
(and stops the source) when the host does not take it within ``sendTimeout``.
Each rule therefore gets a buffer (eKuiper's rule option ``bufferLength``,
default 1024 records) that absorbs a stalled sink, for example while its
plugin restarts.  Records move in batches, one lock round per batch rather
than per record.  A full buffer blocks the source thread: backpressure.

The buffer is bounded in bytes too (``limits.rule_buffer_mb``, counted as
the records took on the wire): 1024 records of 10 MB each would otherwise be
10 GB.  A batch is let in while the buffer is below both bounds, so it holds
at most one batch more than either.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

DEFAULT_CAPACITY = 1024
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class RecordBuffer:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.capacity = max(1, capacity)
        self.max_bytes = max(1, max_bytes)
        self._batches: deque[list[Any]] = deque()
        self._count = 0
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()

    def put(self, records: list[Any], size: int = 0) -> bool:
        """Queue a batch of ``size`` bytes, waiting while the buffer is full; False once closed."""
        with self._cond:
            while (self._count >= self.capacity or self._bytes >= self.max_bytes) and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._batches.append(records)
            self._count += len(records)
            self._bytes += size
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> list[Any] | None:
        """Everything queued (waiting up to ``timeout`` for something); None once closed and empty."""
        with self._cond:
            if not self._batches and not self._closed:
                self._cond.wait(timeout)
            if not self._batches:
                return None if self._closed else []
            batches, self._batches = self._batches, deque()
            self._count = self._bytes = 0
            self._cond.notify_all()
        if len(batches) == 1:
            return batches[0]
        return [record for batch in batches for record in batch]

    def close(self) -> None:
        """Wake everyone; later puts are refused and queued records are dropped."""
        with self._cond:
            self._closed = True
            self._batches.clear()
            self._count = self._bytes = 0
            self._cond.notify_all()

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        return self._bytes
