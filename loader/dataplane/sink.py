"""Where a rule's results go: portable sink instances and the built-in sinks.

Every sink has the same small surface: ``await start()``,
``deliver_many(emissions)`` called on the rule's data-plane thread (an
emission is one result of the rule, a list of rows: see
loader/rules/pipeline.py), ``settle()`` (called there too, when the rule has
nothing more to send for now), ``await stop()``, and ``metrics``.

What a sink is sent is what eKuiper sends it (loader/dataplane/sink_options.py):
by default one message per emission, the JSON array of its rows; with the
action's ``sendSingle: true`` one message per row, a JSON object; shaped by
``dataTemplate``, ``dataField``, ``fields``, ``excludeFields`` and thinned by
``omitIfEmpty``.  The metrics count rows: records in are the rows handed
over, records out the rows of the messages delivered.

Batching: when the sink's plugin process declared it understands batches
(and batching is enabled), ``deliver_many`` sends up to ``batch.max_records``
messages in one batch message, with one ack per batch.  Each line of
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

The ack window: a plugin process that declared ``ackWindow`` (our sdk) may
have up to ``supervisor.ack_window`` messages unacknowledged (the smaller of
``sinks.ack_window`` and what it declared; 1 for eKuiper SDK plugins, which
then get exactly one message in flight).  Acks come in the order of the
messages, so each is the oldest unacknowledged one's.  ``deliver_many``
returns with fewer than the window in flight; ``settle`` waits for all of
them.  When the process changes, every message in flight goes again, in
order, before any new one (``unacknowledged`` says which), and a send is
given up as soon as the process changed, so no new message overtakes them.
The window is bounded in bytes too (``MAX_INFLIGHT_BYTES``): messages in
flight are memory the rule buffer's byte bound does not count, and 32 records
of 10 MB each held for a sink that does not acknowledge would be 320 MB.
Past the bound the next message waits for the oldest ack; one message bigger
than the bound still goes, alone.

A sink that takes or acknowledges nothing for ``limits.sink_stall_s`` is
stalled: the rule is marked degraded and the plugin unhealthy (restarted),
and again after every further such period, rather than waiting forever.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from loader.dataplane import RunningPlugin, open_and_start
from loader.dataplane.metrics import NodeMetrics, now_ms
from loader.dataplane.parts import RuleParts
from loader.dataplane.sink_options import Message, SinkOptions, messages, sink_options
from loader.log import get_logger
from loader.wire.codec import DataChannelClosed
from loader.wire.sink import AckTimeout, SinkAckError, SinkChannel, SinkTimeout
from sdk.protocol.control import TYPE_SINK, Control
from sdk.protocol.jsonenc import finite
from sdk.protocol.messages import encode_sink, encode_sink_batch

_NEXT_PROCESS_POLL_S = 0.02
#: After a process change, its acks still on their way are taken until none came for this long:
#: nng reads them off the connection one at a time, so "none queued" right now is not "none sent".
_LATE_ACK_S = 0.05
_LATE_ACK_POLL_S = 0.002
#: Default of limits.sink_stall_s.
STALL_S = 30.0
#: Bytes of encoded messages a requireAck sink may have unacknowledged, whatever the ack window.
MAX_INFLIGHT_BYTES = 4 << 20


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
        #: Messages handed over and not sent yet, oldest first.
        self._unsent: deque[Message] = deque()
        #: Messages sent and not acknowledged yet (requireAck), oldest first: one list per nng message.
        self._inflight: deque[list[Message]] = deque()
        #: The encoded size of each of them, in the same order, and their sum.
        self._inflight_sizes: deque[int] = deque()
        self._inflight_bytes = 0
        #: The plugin process generation the messages in flight were sent to.
        self._generation = 0
        #: Acks of a process the messages in flight were taken from may still be queued: drop them first.
        self._stale_acks = False
        #: monotonic time of the last progress: a message delivered, or sent with nothing in flight
        self._progress_at = time.monotonic()
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
        """Send every message made of ``emissions``, in order; returns once each was sent and fewer than the
        ack window remain unacknowledged (none with a window of 1), or the sink stopped."""
        self.metrics.took(sum(len(emission) for emission in emissions), now_ms())
        outgoing, errors = messages(emissions, self.options)
        for error in errors:
            self.metrics.error(error)
        self._unsent.extend(outgoing)
        self._pump(settle=False)

    def settle(self) -> None:
        """Wait until every message handed over is acknowledged (or the sink stopped).

        The rule calls it when it has nothing more to send for now, so the
        messages still in flight are delivered, counted, and sent again to a
        new process if need be, instead of waiting for the next result.
        """
        if self._inflight or self._unsent:
            self._pump(settle=True)

    def _pump(self, settle: bool) -> None:
        """Send the unsent messages in order, keeping at most the ack window unacknowledged, waiting for the
        oldest ack when it is full; then wait until fewer than the window (``settle``: none) remain."""
        inflight, unsent = self._inflight, self._unsent
        while not self._stopping:
            if inflight and self.supervisor.generation != self._generation:
                self._resend_unacked()
            window = self.supervisor.ack_window if self.require_ack else 1
            limit = 1 if settle and not unsent else window
            if len(inflight) >= limit or (inflight and self._inflight_bytes >= MAX_INFLIGHT_BYTES):
                going = self._take_ack()
            elif unsent:
                going = self._send_next()
            else:
                return
            if not going:
                return

    def _send_next(self) -> bool:
        """Send the oldest unsent message (up to ``batch.max_records`` of them in a batch, where the process
        declared batches); False once the channel is closed."""
        supervisor, unsent, inflight = self.supervisor, self._unsent, self._inflight
        limit = supervisor.batch_max_records
        if limit > 1 and len(unsent) > 1:
            chunk = list(islice(unsent, limit))
            payload = encode_sink_batch([message.value for message in chunk])
        else:
            chunk = [unsent[0]]
            payload = encode_sink(chunk[0].value)
        if not inflight:
            self._generation = supervisor.generation
            self._progress_at = time.monotonic()
            if self._stale_acks:
                self.channel.discard_acks()
                self._stale_acks = False
        generation = self._generation
        try:
            # Not sent once the process changed: it must not overtake the messages in flight to the old one.
            self.channel.send_message(payload, lambda: supervisor.generation != generation)
        except SinkTimeout as exc:
            self._note_retry(str(exc))
            self._note_stall(str(exc))
            return True
        except DataChannelClosed:
            return False
        for _ in chunk:
            unsent.popleft()
        if self.require_ack:
            inflight.append(chunk)
            self._inflight_sizes.append(len(payload))
            self._inflight_bytes += len(payload)
        else:
            self.metrics.gave(_rows(chunk), now_ms())
            self._delivered()
        return True

    def _take_ack(self) -> bool:
        """Wait for the ack of the oldest message in flight and count it; False once the channel is closed.

        After an ack timeout it goes on waiting rather than sending a copy:
        the process that has the message is still there, so the ack may still
        come, and a copy would only queue up in front of a plugin that is not
        reading.  A replaced process gets the messages again (``_pump``).
        """
        supervisor, generation = self.supervisor, self._generation
        try:
            reply = self.channel.recv_ack(lambda: supervisor.generation != generation)
        except AckTimeout as exc:
            self._note_retry(str(exc), "waiting for the ack of the message sent")
            self._note_stall(str(exc))
            return True
        except SinkTimeout:
            return True  # the process was replaced: _pump sends the unacknowledged messages again
        except DataChannelClosed:
            return False
        assert reply is not None, "a blocking receive returns an ack or raises"
        self._acked(reply)
        return True

    def _acked(self, reply: bytes) -> None:
        """The oldest message's ack: count its rows as delivered (or failed).

        A batch ack may say the plugin stopped after its first ``done``
        messages: those count, the rest (and every later message in flight)
        are sent again, to the next process.  A batch ack saying ``failed``
        messages failed does not say which: the rows of the last ones handled
        are counted as not delivered (exact when every message holds the same
        number of rows, as without windows).
        """
        chunk = self._inflight.popleft()
        size = self._inflight_sizes.popleft()
        self._inflight_bytes -= size
        count = len(chunk)
        try:
            partial = self.channel.ack_result(reply)
        except SinkAckError as exc:
            self.metrics.error(exc.error)
            self.error_generation = self._generation
            handled = count if exc.done is None else min(exc.done, count)
            failed = handled if exc.failed is None else min(exc.failed, handled)
            self.metrics.gave(_rows(chunk[: handled - failed]), now_ms())
        else:
            handled = count if partial is None else min(partial, count)
            self.metrics.gave(_rows(chunk[:handled]), now_ms())
        self._delivered(resumed=handled == count)
        if handled < count:
            self._inflight.appendleft(chunk)
            self._inflight_sizes.appendleft(size)
            self._inflight_bytes += size
            self._requeue(handled)
            self._await_next_process(self._generation)

    def _resend_unacked(self) -> None:
        """The process the messages in flight went to was replaced: all of them go again, in order, first.

        The old process's acks that already came are taken first (they are
        the oldest messages', in order), so what it acknowledged is not sent
        again.  The new process may still get a message the old one had
        handled before its ack was lost (a duplicate), never miss one.
        """
        quiet_until = time.monotonic() + _LATE_ACK_S
        while self._inflight:
            try:
                reply = self.channel.recv_ack(block=False)
            except DataChannelClosed:
                return
            if reply is None:
                if time.monotonic() >= quiet_until:
                    break
                time.sleep(_LATE_ACK_POLL_S)
                continue
            self._acked(reply)
            quiet_until = time.monotonic() + _LATE_ACK_S
        if not self._inflight:
            return
        count = len(self._inflight)
        self._requeue()
        error = f"plugin {self.supervisor.name}: sink {self.symbol}: the plugin process was replaced"
        self._note_retry(error, f"sending the {count} unacknowledged messages again")
        self._note_stall(error)

    def _requeue(self, handled: int = 0) -> None:
        """Every message in flight goes back in front of the unsent ones (see ``unacknowledged``)."""
        again = unacknowledged(self._inflight, self._unsent, handled)
        self._inflight.clear()
        self._inflight_sizes.clear()
        self._inflight_bytes = 0
        self._unsent.clear()
        self._unsent.extend(again)
        self._stale_acks = True

    def _delivered(self, resumed: bool = True) -> None:
        """Something went through: no stall, and after retrying, resumed."""
        self._progress_at = time.monotonic()
        self._stalled_since = None
        self.health.working()
        if resumed and self._retrying:
            self._retrying = False
            process = self.supervisor.process
            self.log.info("sink.resumed", pid=process.pid if process else None)

    def _plugin_unhealthy(self, cause: str) -> None:
        self.supervisor.mark_unhealthy(f"sink {self.symbol} of rule {self.control.rule_id}: {cause}")

    def _note_stall(self, error: str) -> None:
        """After ``stall_s`` without progress: degrade the rule and have the plugin restarted."""
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = self._progress_at
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


def unacknowledged(inflight: Iterable[list[Message]], unsent: Iterable[Message], handled: int = 0) -> deque[Message]:
    """What to send next after the messages in flight were lost: all of them, oldest first, then the unsent.

    ``inflight`` holds one list per nng message sent (several messages for a
    batch); the first ``handled`` messages of the oldest were acknowledged
    (a batch the plugin stopped in the middle of) and are not sent again.
    Batches are not kept: what goes again is cut into batches anew, for
    whatever the next process declares.
    """
    again: deque[Message] = deque()
    for index, chunk in enumerate(inflight):
        again.extend(chunk[handled:] if index == 0 else chunk)
    again.extend(unsent)
    return again


class _BuiltinSink:
    """A sink inside the loader: nothing to start or stop, only counters."""

    def __init__(self, symbol: str, index: int) -> None:
        self.metrics = NodeMetrics(f"sink_{symbol}_{index}_0")

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def settle(self) -> None:
        """Nothing is ever in flight: ``deliver_many`` is done when it returns."""


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
