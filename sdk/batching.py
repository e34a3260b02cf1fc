"""The batching extension, plugin side: used only when the host offered it.

Shapes (docs/protocol.md, Extensions > Batching; written and read by sdk/protocol/messages.py):

- source -> host: ``{"batch": [[message, meta], ...]}``, records in emit order;
- host -> sink: ``#batch <n>``, a newline, then ``n`` lines, each one message's
  JSON exactly as it would be sent alone (see runtimes.SinkRuntime);
- sink ack: one per batch message, ``{}`` or ``{"error": ..., "failed": k}``;
- function: ``ExecBatch`` (see runtimes.FunctionRuntime).

A source batch is sent when it holds ``maxRecords`` records, when its first
record has waited ``lingerMs``, before an error report, and when the source
finishes or stops.  One flusher thread per source instance does the waiting,
so no timer is made per record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sdk.protocol.messages import encode_batch_entry, encode_source_batch, encode_source_error


class SourceBatcher:
    """Buffers a source's records and sends them as batch messages, in emit order.

    ``record`` and ``error`` are what the source's Context calls.  Records are
    encoded at once (a source may reuse and change its dict after emitting
    it), buffered, and sent when ``max_records`` are buffered (by the emitting
    thread) or when the first buffered record has waited ``linger_s`` (by the
    flusher thread).  Sending happens under the buffer's lock, so batches
    never overtake each other, and a send that blocks (the host applying
    backpressure) blocks the emitting thread too.
    """

    def __init__(
        self,
        send: Callable[[bytes], object],
        max_records: int,
        linger_s: float,
        on_error: Callable[[BaseException], None],
        name: str = "source-batch",
    ) -> None:
        self._send = send
        self._max = max(1, max_records)
        self._linger = max(0.0, linger_s)
        self._on_error = on_error
        self._parts: list[bytes] = []
        self._first_at = 0.0
        self._cond = threading.Condition(threading.Lock())
        #: The flusher waits with no deadline: the next first record must wake it.
        self._idle = True
        self._closed = False
        self._thread = threading.Thread(target=self._flusher, name=name, daemon=True)
        self._thread.start()

    def record(self, message: Any, meta: Any) -> None:
        """Buffer one record; sends the batch when it is full."""
        part = encode_batch_entry(message, meta)
        with self._cond:
            parts = self._parts
            parts.append(part)
            if len(parts) == 1:
                self._first_at = time.monotonic()
                if self._idle:
                    self._cond.notify()
            if len(parts) >= self._max:
                self._flush_locked()

    def error(self, text: str) -> None:
        """Send the records buffered so far, then the error: the host sees them in emit order."""
        with self._cond:
            self._flush_locked()
            self._send(encode_source_error(text))

    def flush(self) -> None:
        """Send what is buffered now (a finished source, a stop)."""
        with self._cond:
            self._flush_locked()

    def close(self, flush: bool = True) -> None:
        """Stop the flusher; send what is buffered unless ``flush`` is false (errors go to on_error)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            if flush:
                try:
                    self._flush_locked()
                except Exception as err:
                    self._on_error(err)
            self._parts = []

    def _flush_locked(self) -> None:
        parts = self._parts
        if not parts:
            return
        self._parts = []
        self._send(encode_source_batch(parts))

    def _flusher(self) -> None:
        cond = self._cond
        with cond:
            while not self._closed:
                if not self._parts:
                    self._idle = True
                    cond.wait()
                    self._idle = False
                    continue
                wait = self._first_at + self._linger - time.monotonic()
                if wait > 0:
                    # A batch that fills up meanwhile is sent by the emitter; on waking
                    # this loop looks at whatever batch is current then.
                    cond.wait(wait)
                    continue
                try:
                    self._flush_locked()
                except Exception as err:
                    self._on_error(err)
