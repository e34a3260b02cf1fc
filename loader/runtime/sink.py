"""Where a rule's results go: portable sink instances and the built-in sinks.

Every sink has the same small surface: ``await start()``,
``deliver_many(emissions)`` called on the rule's data-plane thread (an
emission is one result of the rule, a list of rows: see
loader/rules/pipeline.py), ``await stop()``, and ``metrics``.

What a sink is sent is what eKuiper sends it (loader/runtime/sink_options.py):
by default one message per emission, the JSON array of its rows; with the
action's ``sendSingle: true`` one message per row, a JSON object; shaped by
``dataTemplate``, ``dataField``, ``fields``, ``excludeFields`` and thinned by
``omitIfEmpty``.  The metrics count rows: records in are the rows handed
over, records out the rows of the messages delivered.

Batching: when the sink's plugin process declared it understands batches
(and batching is enabled), ``deliver_many`` sends up to ``batch.max_records``
messages in one batch message and waits for one ack per batch.  Each line of
a batch is exactly what that message would have been alone, so a sink sees
the same messages either way.  There is no linger on this side: the rule
hands over what accumulated while the previous message was sent, so batches
grow with the load and a lone message goes out at once (plain).  The
capability is read again before each send, so a process replaced by one that
does not declare it gets plain messages from then on: a plugin that did not
declare it (one built on eKuiper's SDK) never sees a batch.

A portable sink with ``requireAck`` delivers at least once: a message counts as
delivered only when its ack arrived; when the plugin process is replaced
while a message waits for its ack, or no process takes it in time, the same
message is sent again to the next process.  A message the new process had
already handled before its ack was lost can therefore arrive twice, never
zero times.  Without ``requireAck`` a message still in the old process's
buffers when it dies is lost.

A sink that takes or acknowledges nothing for ``limits.sink_stall_s`` is
stalled: the rule is marked degraded and the plugin unhealthy (restarted),
and again after every further such period, rather than waiting forever.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from loader.log import get_logger
from loader.rules.parts import RuleParts
from loader.runtime import RunningPlugin, open_and_start
from loader.runtime.metrics import NodeMetrics, now_ms
from loader.runtime.sink_options import Message, SinkOptions, messages, sink_options
from loader.wire.codec import DataChannelClosed
from loader.wire.sink import AckTimeout, SinkAckError, SinkChannel, SinkTimeout
from sdk.protocol.control import TYPE_SINK, Control
from sdk.protocol.jsonenc import finite
from sdk.protocol.messages import encode_sink, encode_sink_batch

_NEXT_PROCESS_POLL_S = 0.02
#: Default of limits.sink_stall_s.
STALL_S = 30.0


class PortableSink:
    def __init__(
        self,
        supervisor: RunningPlugin,
        symbol: str,
        rule_id: str,
        index: int,
        config: dict[str, Any],
        ipc_dir: Path,
        parts: RuleParts | None = None,
        stall_s: float = STALL_S,
    ) -> None:
        self.supervisor = supervisor
        self.symbol = symbol
        self.op_id = f"sink-{symbol}-{index}"
        self.metrics = NodeMetrics(f"sink_{symbol}_{index}_0")
        self.require_ack = bool(config.get("requireAck", False))
        #: Checked when the rule was admitted; the whole ``config`` still reaches the plugin's configure.
        self.options = sink_options(config)
        self.control = Control(symbol, TYPE_SINK, rule_id, self.op_id, 0, config=config)
        self.key = self.control.key
        self.channel = SinkChannel.for_instance(
            ipc_dir, supervisor.name, symbol, rule_id, self.op_id, 0, require_ack=self.require_ack
        )
        self._stopping = False
        self._retrying = False
        #: The plugin process generation that error-acked last (rule health: an error of an old process is history).
        self.error_generation = 0
        self.log = get_logger(plugin=supervisor.name, symbol=symbol, rule=rule_id)
        self.health = (parts or RuleParts(rule_id)).part("sink", symbol, supervisor.name, self._plugin_unhealthy)
        self.stall_s = stall_s
        #: monotonic time of the first failed send since the last one that went through
        self._stalled_since: float | None = None

    async def start(self) -> None:
        await open_and_start(self.channel, self.supervisor, self.control)
        self.channel.connect()

    async def stop(self) -> None:
        self._stopping = True
        self.channel.close()
        try:
            await self.supervisor.stop_symbol(self.key)
        except Exception as exc:
            self.log.warning("sink.stop_failed", error=str(exc))

    def deliver(self, record: Any) -> None:
        self.deliver_many([[record]])

    def deliver_many(self, emissions: list[list[Any]]) -> None:
        """Send every message made of ``emissions``, in order; returns once each was delivered, refused,
        or the sink stopped."""
        self.metrics.took(sum(len(emission) for emission in emissions), now_ms())
        outgoing, errors = messages(emissions, self.options)
        for error in errors:
            self.metrics.error(error)
        supervisor = self.supervisor
        done, total = 0, len(outgoing)
        while done < total and not self._stopping:
            limit = supervisor.batch_max_records
            if limit > 1 and total - done > 1:
                chunk = outgoing[done : done + limit]
                payload = encode_sink_batch([message.value for message in chunk])
            else:
                chunk = outgoing[done : done + 1]
                payload = encode_sink(chunk[0].value)
            handled = self._send(payload, chunk)
            if handled is None:
                return
            done += handled

    def _send(self, payload: bytes, chunk: list[Message]) -> int | None:
        """One message holding ``chunk``; how many of its messages are done with (0: send again), None when closed.

        A batch ack may say the plugin stopped after its first ``done``
        messages: those count, the rest are sent again (to the next process).
        A batch ack saying ``failed`` messages failed does not say which: the
        rows of the last ones handled are counted as not delivered (exact when
        every message holds the same number of rows, as without windows).
        """
        supervisor = self.supervisor
        generation = supervisor.generation
        sent_at = time.monotonic()
        abandon = lambda: supervisor.generation != generation  # noqa: E731
        count = len(chunk)
        try:
            partial = self._send_and_wait(payload, abandon, sent_at)
        except SinkTimeout as exc:
            self._note_retry(str(exc))
            self._note_stall(str(exc), sent_at)
            return 0
        except SinkAckError as exc:
            self.metrics.error(exc.error)
            self.error_generation = generation
            handled = count if exc.done is None else min(exc.done, count)
            failed = handled if exc.failed is None else min(exc.failed, handled)
            self.metrics.gave(_rows(chunk[: handled - failed]), now_ms())
        except DataChannelClosed:
            return None
        else:
            handled = count if partial is None else min(partial, count)
            self.metrics.gave(_rows(chunk[:handled]), now_ms())
        self._stalled_since = None
        self.health.working()
        if handled < count:
            self._await_next_process(generation)
        elif self._retrying:
            self._retrying = False
            self.log.info("sink.resumed", pid=supervisor.process.pid if supervisor.process else None)
        return handled

    def _send_and_wait(self, payload: bytes, abandon, sent_at: float) -> int | None:  # noqa: ANN001
        """``send_raw``; after an ack timeout, go on waiting for that ack rather than sending a copy.

        The process that has the record is still there, so the ack may still
        come; a copy would only queue up in front of a plugin that is not
        reading.  A replaced process (SinkTimeout) gets the record again.
        """
        try:
            return self.channel.send_raw(payload, abandon=abandon)
        except AckTimeout as exc:
            error = str(exc)
        while True:
            self._note_retry(error, "waiting for the ack of the message sent")
            self._note_stall(error, sent_at)
            try:
                return self.channel.wait_ack(abandon)
            except AckTimeout as exc:
                error = str(exc)

    def _plugin_unhealthy(self, cause: str) -> None:
        self.supervisor.mark_unhealthy(f"sink {self.symbol} of rule {self.control.rule_id}: {cause}")

    def _note_stall(self, error: str, sent_at: float) -> None:
        """After ``stall_s`` without progress: degrade the rule and have the plugin restarted."""
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = sent_at
        stalled = now - self._stalled_since
        if stalled >= self.stall_s:
            self._stalled_since = now  # the next report comes after another full period
            self.health.failed(f"nothing delivered for {stalled:.0f}s (limits.sink_stall_s {self.stall_s:g}s): {error}")

    def _await_next_process(self, generation: int) -> None:
        """The plugin stopped in the middle of a batch: it is going away, so the rest waits for the next process.

        Sent at once, the rest could land in the stopping process's socket,
        or wait in ours and reach the next process while we give up on its
        ack because the process changed, and then be sent twice.  Waits at
        most the send timeout (a sink instance restarted in the same process).
        """
        supervisor = self.supervisor
        deadline = time.monotonic() + self.channel.send_timeout
        while not self._stopping and supervisor.generation == generation and time.monotonic() < deadline:
            time.sleep(_NEXT_PROCESS_POLL_S)

    def _note_retry(self, error: str, reason: str = "sending the same message again") -> None:
        if not self._retrying:
            self._retrying = True
            self.log.warning("sink.retrying", error=error, reason=reason)


def _rows(chunk: list[Message]) -> int:
    return sum(message.rows for message in chunk)


class _BuiltinSink:
    """A sink inside the loader: nothing to start or stop, only counters."""

    def __init__(self, symbol: str, index: int) -> None:
        self.metrics = NodeMetrics(f"sink_{symbol}_{index}_0")

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class LogSink(_BuiltinSink):
    """Built-in ``log``: each message a portable sink would get becomes a ``sink.log`` event.

    The action's common properties apply as to a portable sink, so the log
    shows exactly what a sink would be sent: by default one event per result
    with ``message`` the array of its rows; with ``sendSingle`` one per row.
    """

    def __init__(self, rule_id: str, index: int, props: dict[str, Any] | None = None) -> None:
        super().__init__("log", index)
        self.log = get_logger(rule=rule_id, symbol="log")
        self.options: SinkOptions = sink_options(props or {})

    def deliver(self, record: Any) -> None:
        self.deliver_many([[record]])

    def deliver_many(self, emissions: list[list[Any]]) -> None:
        now = now_ms()
        self.metrics.took(sum(len(emission) for emission in emissions), now)
        outgoing, errors = messages(emissions, self.options)
        for error in errors:
            self.metrics.error(error)
        for message in outgoing:
            self.log.info("sink.log", message=finite(message.value))  # NaN/Infinity as null: strict JSON
        self.metrics.gave(_rows(outgoing), now)


class NopSink(_BuiltinSink):
    """Built-in ``nop``: counts the rows of results and drops them (for tests and benchmarks)."""

    def __init__(self, rule_id: str, index: int, props: dict[str, Any] | None = None) -> None:
        super().__init__("nop", index)

    def deliver_many(self, emissions: list[list[Any]]) -> None:
        now = now_ms()
        count = sum(len(emission) for emission in emissions)
        self.metrics.took(count, now)
        self.metrics.gave(count, now)


#: Sink types the loader provides itself, used when no loaded plugin provides a sink of that name.
BUILTIN_SINKS: dict[str, type[LogSink] | type[NopSink]] = {"log": LogSink, "nop": NopSink}
