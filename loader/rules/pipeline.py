"""One running rule: source records through the compiled query into its sinks.

The source's thread hands batches of records to ``offer``; the rule's own
worker thread takes them from a bounded buffer, applies the query and
delivers each result to every sink in order.  A record that makes the query
fail (a function error, a division by zero) is counted as an exception of the
operator and dropped; the rule keeps running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Protocol

from loader.rules.buffer import DEFAULT_CAPACITY, RecordBuffer
from loader.rules.sql import CompiledQuery
from loader.runtime.metrics import NodeMetrics

TAKE_POLL_S = 0.5


class Sink(Protocol):
    metrics: NodeMetrics

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def deliver(self, record: Any) -> None: ...


class RulePipeline:
    def __init__(self, rule_id: str, stream: str, query: CompiledQuery, sinks: list[Sink],
                 buffer_length: int = DEFAULT_CAPACITY) -> None:
        self.rule_id = rule_id
        self.query = query
        self.sinks = sinks
        self.buffer = RecordBuffer(buffer_length)
        self.source_metrics = NodeMetrics(f"source_{stream}_0")
        self.op_metrics = NodeMetrics("op_project_0")
        self.started_at = int(time.time() * 1000)
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Start the sinks, then the worker; stop() undoes both."""
        started: list[Sink] = []
        try:
            for sink in self.sinks:
                await sink.start()
                started.append(sink)
        except Exception:
            for sink in reversed(started):
                await sink.stop()
            raise
        self._thread = threading.Thread(target=self._work, name=f"rule-{self.rule_id}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Drop what is buffered, unblock a sink waiting on a gone plugin, wait for the worker."""
        self.buffer.close()
        for sink in self.sinks:
            await sink.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def offer(self, records: list[Any]) -> None:
        """Called on the source's thread; blocks while this rule's buffer is full."""
        self.buffer.put(records)

    def _work(self) -> None:
        take, process = self.buffer.take, self.on_record
        while True:
            records = take(TAKE_POLL_S)
            if records is None:
                return
            for record in records:
                process(record)

    def on_record(self, record: Any) -> None:
        self.source_metrics.records_in += 1
        if not isinstance(record, dict):
            self.source_metrics.error(f"a record must be a JSON object, got {type(record).__name__}")
            return
        self.source_metrics.records_out += 1
        op = self.op_metrics
        op.records_in += 1
        try:
            result = self.query.apply(record)
        except Exception as exc:  # one bad record must not stop the rule
            op.error(f"{type(exc).__name__}: {exc}")
            return
        if result is None:
            return
        op.records_out += 1
        for sink in self.sinks:
            sink.deliver(result)

    def on_source_error(self, error: str) -> None:
        self.source_metrics.error(error)

    def metrics(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for node in (self.source_metrics, self.op_metrics, *(s.metrics for s in self.sinks)):
            values.update(node.as_dict())
        values["lastStartTimestamp"] = self.started_at
        return values
