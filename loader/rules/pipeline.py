"""One running rule: source records through the compiled query into its sinks.

The source's thread hands batches of records to ``offer``; the rule's own
worker thread takes everything buffered at once, applies the query to that
batch and hands the results, in order, to every sink's ``deliver_many``.

What a sink is given is a list of *emissions*: an emission is one result of
the rule as eKuiper produces it, a list of rows (one row for a query without
a window, every row of a window's group otherwise).  The sink decides how an
emission becomes messages (eKuiper sends it as one JSON array unless the
action sets ``sendSingle``).  A
record that makes the query fail (a function error, a division by zero) is
counted as an exception of the operator and dropped; the rule keeps running.

When a portable function of the query can take batches (batching extension),
the batch is evaluated with ``CompiledQuery.apply_many``: one ``ExecBatch``
per call site instead of one round trip per row.  Otherwise rows are
evaluated one by one, as before.  Nothing waits for a batch to fill: a batch
is whatever arrived while the previous one was processed, so latency at low
rates is that of a single record.

A rule with a window (loader/rules/windowed.py) emits when a window closes:
one emission per window, holding all its result rows.  Windows close on time
as well as on records, so the worker waits for records at most until the
next window deadline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Protocol, TypeAlias

from loader.dataplane.metrics import NodeMetrics, now_ms
from loader.dataplane.parts import RuleParts
from loader.log import get_logger
from loader.rules.buffer import DEFAULT_CAPACITY, DEFAULT_MAX_BYTES, RecordBuffer
from loader.rules.checkpoint import Checkpointer
from loader.rules.sql import CompiledQuery
from loader.rules.windowed import WindowedRule
from loader.tasks import Backoff, report_failure

#: One result of a rule: the rows eKuiper would send to a sink as one JSON array.
Emission: TypeAlias = list[dict[str, Any]]

TAKE_POLL_S = 0.5
#: Longest the worker pauses after repeated failures; records wait in the buffer meanwhile.
WORKER_BACKOFF_MAX_S = 5.0


class RuleSink(Protocol):
    metrics: NodeMetrics

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def deliver_many(self, emissions: list[Emission]) -> None: ...

    def settle(self) -> None: ...


class RulePipeline:
    def __init__(
        self,
        rule_id: str,
        stream: str,
        query: CompiledQuery,
        sinks: list[RuleSink],
        buffer_length: int = DEFAULT_CAPACITY,
        buffer_bytes: int = DEFAULT_MAX_BYTES,
        parts: RuleParts | None = None,
        windowed: WindowedRule | None = None,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.rule_id = rule_id
        self.query = query
        #: The window state of a rule with a window; in memory only, unless ``checkpointer`` saves it
        #: (rule option qos >= 1: loader/rules/checkpoint.py).
        self.windowed = windowed
        self.checkpointer = checkpointer if windowed is not None else None
        self.sinks = sinks
        self.buffer = RecordBuffer(buffer_length, buffer_bytes)
        #: Filled in by the rule's function call sites and sinks (loader/dataplane/parts.py).
        self.parts = parts or RuleParts(rule_id)
        self.source_metrics = NodeMetrics(f"source_{stream}_0")
        self.op_metrics = NodeMetrics("op_project_0")
        if windowed is not None:
            windowed.fail = self._window_failed
        self.started_at = int(time.time() * 1000)
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Start the sinks, then the worker; stop() undoes both."""
        started: list[RuleSink] = []
        try:
            for sink in self.sinks:
                await sink.start()
                started.append(sink)
        except Exception:
            for sink in reversed(started):
                await sink.stop()
            raise
        if self.checkpointer is not None and self.windowed is not None:
            await asyncio.to_thread(self.checkpointer.load_into, self.windowed, self.rule_id)
            self.checkpointer.next_due = time.monotonic() + self.checkpointer.interval_ms / 1000
        self._thread = threading.Thread(target=self._work, name=f"rule-{self.rule_id}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Drop what is buffered, unblock a sink waiting on a gone plugin, wait for the worker."""
        self.buffer.close()
        for sink in self.sinks:
            await sink.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
            if not self._thread.is_alive():  # the worker is done with the windows: their state is final
                await asyncio.to_thread(self._final_checkpoint)

    def _final_checkpoint(self) -> None:
        if self.checkpointer is None or self.windowed is None:
            return
        try:
            self.checkpointer.save(self.windowed)
        except OSError as exc:
            get_logger(rule=self.rule_id).error(
                "rule.checkpoint_failed",
                file=str(self.checkpointer.path),
                error=str(exc),
                reason="the windows' rows are lost on restart",
            )

    def offer(self, records: list[Any], size: int = 0) -> None:
        """Called on the source's thread with records of ``size`` bytes; blocks while this rule's buffer is full."""
        self.buffer.put(records, size)

    def _work(self) -> None:
        """Until the buffer closes.  A batch that fails in a way no check foresaw is
        dropped, counted and logged (task.failed); the rule keeps running."""
        take, process = self.buffer.take, self.on_records
        backoff = Backoff(max_s=WORKER_BACKOFF_MAX_S)
        windowed = self.windowed
        if windowed is not None:
            windowed.start(now_ms())
        while True:
            records = take(0.0)
            if records == []:  # nothing more for now: let the sinks' messages in flight be acknowledged first
                self._settle_sinks()
                records = take(self._wait_s())
            if records is None:
                return
            if not records and windowed is None:
                continue
            try:
                if records:
                    process(records)
                else:
                    self.on_tick()
            except Exception as exc:
                self.op_metrics.error(f"{type(exc).__name__}: {exc}")
                time.sleep(report_failure("rule_worker", exc, backoff, rule=self.rule_id, dropped=len(records)))
            else:
                backoff.succeeded()
            if self.checkpointer is not None and self.checkpointer.due(time.monotonic()):
                self._checkpoint()

    def _settle_sinks(self) -> None:
        """Wait for the acks of what the sinks still have in flight (their ack window), so the results
        of a lull are delivered and counted before the worker sleeps; a sink's fault never stops the rule."""
        for sink in self.sinks:
            try:
                sink.settle()
            except Exception as exc:
                report_failure("sink_settle", exc, None, rule=self.rule_id)

    def _checkpoint(self) -> None:
        """On the worker's thread, which owns the windows: a failed write is logged and retried next period."""
        assert self.checkpointer is not None and self.windowed is not None
        try:
            self.checkpointer.save(self.windowed)
        except OSError as exc:
            self.checkpointer.next_due = time.monotonic() + self.checkpointer.interval_ms / 1000
            get_logger(rule=self.rule_id).error(
                "rule.checkpoint_failed",
                file=str(self.checkpointer.path),
                error=str(exc),
                reason="retried after checkpointInterval",
            )

    def _wait_s(self) -> float:
        """How long to wait for records: until the next window closes, at most ``TAKE_POLL_S``."""
        deadline = self.windowed.deadline() if self.windowed is not None else None
        if deadline is None:
            return TAKE_POLL_S
        return min(TAKE_POLL_S, max(0.0, (deadline - now_ms()) / 1000))

    def on_tick(self) -> None:
        """Close the windows whose time has come, with no new record."""
        if self.windowed is not None:
            self._deliver(self.windowed.on_time(now_ms()), now_ms())

    def on_record(self, record: Any) -> None:
        self.on_records([record])

    def on_records(self, records: list[Any]) -> None:
        """Apply the query to a batch of records and deliver the results, in order, to every sink."""
        now = now_ms()
        source = self.source_metrics
        source.took(len(records), now)
        rows = [record for record in records if isinstance(record, dict)]
        if len(rows) != len(records):
            for record in records:
                if not isinstance(record, dict):
                    source.error(f"a record must be a JSON object, got {type(record).__name__}")
        source.gave(len(rows), now)
        op = self.op_metrics
        if rows:
            op.took(len(rows), now)
        if self.windowed is not None:
            self._deliver(self.windowed.on_rows(rows, now), now)
            return
        results: list[Any] = []
        query = self.query
        if query.batching:
            for outcome in query.apply_many(rows):
                if outcome is None:
                    continue
                if isinstance(outcome, Exception):
                    op.error(f"{type(outcome).__name__}: {outcome}")
                else:
                    results.append(outcome)
        else:
            apply, append = query.apply, results.append
            for row in rows:
                try:
                    result = apply(row)
                except Exception as exc:  # one bad record must not stop the rule
                    op.error(f"{type(exc).__name__}: {exc}")
                    continue
                if result is not None:
                    append(result)
        self._deliver([[row] for row in results], now)

    def _deliver(self, emissions: list[Emission], now: int) -> None:
        if not emissions:
            return
        self.op_metrics.gave(sum(len(e) for e in emissions), now)
        for sink in self.sinks:
            sink.deliver_many(emissions)

    def _window_failed(self, exc: Exception) -> None:
        self.op_metrics.error(f"{type(exc).__name__}: {exc}")

    def on_source_error(self, error: str) -> None:
        self.source_metrics.error(error)

    def metrics(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for node in (self.source_metrics, self.op_metrics, *(s.metrics for s in self.sinks)):
            values.update(node.as_dict())
        values["lastStartTimestamp"] = self.started_at
        if self.windowed is not None and self.windowed.watermark is not None:
            values["op_window_0_late_records_total"] = self.windowed.late
        return values
