"""Host end of a sink data channel and its acknowledgement channel.

Two sockets per running sink instance:

- ack: host PULL *listens* on ``{ruleId}_{opId}_{instanceId}_ack.ipc``. It must
  exist before ``start`` is sent: eKuiper's SDK dials it synchronously while
  handling ``start`` (whether or not acks are required) and fails the command
  if nobody listens.
- data: the plugin PULL listens on ``{ruleId}_{opId}_{instanceId}.ipc`` once
  ``start`` succeeded; the host PUSH dials it then.

Both are plain Python sockets speaking nng's wire format, not pynng: the ack
end is the listener of sdk/protocol/ipc_listen.py, the data end the dialer of
sdk/protocol/ipc_wire.py, so a record's send is one system call on the rule
worker's thread (through pynng it was the largest cost of a record's trip:
docs/benchmarks.md).  The plugin keeps its nng sockets.

Both survive the plugin process being replaced: the ack listener is ours, and
the dialer redials the data address by itself.  While no process listens, a send
blocks until one does or the send timeout passes; the timeout surfaces as
``SinkTimeout`` so the caller can re-send the same record to the new process.
A message is written whole or not at all: one cut off by the caller giving
up, or by the connection ending, was not received.
With ``requireAck`` a record counts as delivered only when its ack arrived,
which is what makes a hot swap lose nothing: unacknowledged records are sent
again.

A message is one message as eKuiper sends it (an array of rows, or an object
with ``sendSingle``: loader/dataplane/sink_options.py makes them), or a batch of
such messages (batching extension, only towards a plugin that declared it
understands batches); the channel does not care: one message, one ack.

Two ways to send with ``requireAck``: ``send_raw`` sends one message and
waits for its ack (one message in flight); ``send_message`` and ``recv_ack``
do the two halves apart, so a caller can have several messages in flight
(the ack window, loader/dataplane/sink.py) and pair acks with them in order.

Sends and ack waits run in short slices under the channel's use lock, so
``close`` from another thread ends them without closing a socket under them
(loader/wire/exclusive.py says why that matters: for nng a crash, for a plain
socket a descriptor number reused under a wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loader.wire.addresses import ack_path, data_path
from loader.wire.codec import (
    DataChannelClosed,
    DataChannelError,
    DataChannelTimeout,
    ack_counts,
    decode_ack,
)
from loader.wire.exclusive import SLICE_S, UseLock
from sdk.protocol.ipc_listen import IpcPullListener
from sdk.protocol.ipc_wire import IpcPushDialer
from sdk.protocol.messages import ACK_OK, encode_sink

#: Without requireAck, acks a plugin sends anyway are discarded every this many sends,
#: so the plugin's ack socket never fills up and blocks it.
_DRAIN_EVERY = 64


class SinkAckError(DataChannelError):
    """The plugin acknowledged a message with an error; ``error`` is its own text.

    ``failed`` is how many records of a batch message failed, when the ack says
    so (sdk batch acks do); None for a plain message or when it does not say.
    ``done`` is as ``send_raw``'s return value.
    """

    def __init__(self, message: str, error: str, failed: int | None = None, done: int | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.failed = failed
        self.done = done


class SinkTimeout(DataChannelTimeout):
    """A record was not taken, or not acknowledged, in time; it is safe to send it again."""


class AckTimeout(SinkTimeout):
    """The record was sent to the process that is still there, but its ack did not come in time.

    Its ack may still come: ``wait_ack`` goes on waiting for it.  Sending the
    record again to the same process would only queue another copy.
    """


class SinkChannel:
    """Sends a rule's output to one sink instance of a plugin, waiting for acks if asked."""

    def __init__(
        self,
        data: Path,
        ack: Path,
        plugin: str,
        symbol: str,
        *,
        require_ack: bool = False,
        send_timeout: float = 5.0,
        ack_timeout: float = 5.0,
    ) -> None:
        self.data_path = data
        self.ack_path = ack
        self.plugin = plugin
        self.symbol = symbol
        self.require_ack = require_ack
        self.send_timeout = send_timeout
        self.ack_timeout = ack_timeout
        self._push: IpcPushDialer | None = None
        self._acks: IpcPullListener | None = None
        self._use = UseLock()
        self._maybe_stale_ack = False
        self._sends = 0

    @classmethod
    def for_instance(
        cls,
        ipc_dir: Path,
        plugin: str,
        symbol: str,
        rule_id: str,
        op_id: str,
        instance_id: int,
        **options: Any,
    ) -> SinkChannel:
        """The channel at the addresses the protocol assigns to a rule's sink instance."""
        return cls(
            data_path(ipc_dir, rule_id, op_id, instance_id),
            ack_path(ipc_dir, rule_id, op_id, instance_id),
            plugin,
            symbol,
            **options,
        )

    def open(self) -> None:
        """Listen for acks; call before sending ``start``."""
        if self._acks is not None:
            return
        self.ack_path.unlink(missing_ok=True)
        try:
            acks = IpcPullListener(self.ack_path)
        except OSError as exc:
            raise DataChannelError(f"{self._who()}: cannot listen on {self.ack_path}: {exc}") from exc
        self._use.reopen()
        self._acks = acks

    def connect(self) -> None:
        """Dial the plugin's data socket; call after ``start`` succeeded.

        A failed first dial is not an error: each send dials again (backing
        off as nng does) and waits, up to the send timeout, for a listener.
        Calling it again (say, after replaying ``start`` to a new process) is a
        no-op: the existing dialer already reconnects.
        """
        if self._push is not None:
            return
        push = IpcPushDialer(self.data_path)
        push.dial()
        self._push = push

    def send(self, data: Any) -> None:
        """Encode ``data`` (an object, or a list of objects) and send it; see ``send_raw``."""
        self.send_raw(encode_sink(data))

    def send_raw(self, payload: bytes, abandon: Callable[[], bool] | None = None) -> int | None:
        """Send one encoded message; with requireAck, return only once the plugin acked it.

        Raises SinkTimeout (send or ack not done in time: re-send the record),
        SinkAckError (the plugin refused it) or DataChannelClosed.  Returns
        None, or for a batch the plugin stopped in the middle of, how many of
        its records (from the first) were handled: send the rest again.
        """
        with self._use.lock:
            push, acks = self._sockets()
            if self._maybe_stale_ack or (not self.require_ack and self._sends % _DRAIN_EVERY == 0):
                self._drain_acks(acks)
            self._sends += 1
            self._send(push, payload, abandon)
            if self.require_ack:
                return self.ack_result(self._wait_ack(acks, abandon))
            return None

    def send_message(self, payload: bytes, abandon: Callable[[], bool] | None = None) -> None:
        """Send one encoded message without waiting for its ack (``recv_ack`` takes it).

        ``abandon`` is checked between send slices: once it turns true the
        message is not sent (SinkTimeout), so it cannot overtake messages in
        flight to a process that was replaced.  Raises SinkTimeout (not taken
        in time: send it again) or DataChannelClosed.  Without requireAck,
        acks a plugin sends anyway are discarded as by ``send_raw``.
        """
        with self._use.lock:
            push, acks = self._sockets()
            if not self.require_ack and self._sends % _DRAIN_EVERY == 0:
                self._drain_acks(acks)
            self._sends += 1
            self._send(push, payload, abandon)

    def recv_ack(self, abandon: Callable[[], bool] | None = None, block: bool = True) -> bytes | None:
        """The next ack, as sent (``ack_result`` reads it); None when ``block`` is false and none is queued.

        Raises SinkTimeout when ``abandon()`` turned true, AckTimeout after
        ``ack_timeout`` (the ack may still come: call again), DataChannelClosed.
        """
        with self._use.lock:
            _, acks = self._sockets()
            self._maybe_stale_ack = False
            if block:
                return self._wait_ack(acks, abandon)
            return acks.recv_nowait()

    def ack_result(self, reply: bytes) -> int | None:
        """What an ack says: None (all done) or, for a batch the plugin stopped in, how many of its
        records were handled; raises SinkAckError for an error ack."""
        if reply == ACK_OK:
            return None
        error = decode_ack(reply)
        failed, done = ack_counts(reply)
        if error is not None:
            raise SinkAckError(f"{self._who()}: the plugin rejected a record: {error}", error, failed, done)
        return done

    def discard_acks(self) -> None:
        """Drop every ack already queued: with nothing in flight, any ack there is late (an old process's)."""
        with self._use.lock:
            _, acks = self._sockets()
            self._drain_acks(acks)

    def wait_ack(self, abandon: Callable[[], bool] | None = None) -> int | None:
        """After an AckTimeout: wait again for the ack of the message sent last; as ``send_raw``."""
        reply = self.recv_ack(abandon)
        assert reply is not None, "a blocking receive returns an ack or raises"
        return self.ack_result(reply)

    def close(self) -> None:
        """End a send or ack wait in progress (it raises DataChannelClosed), close both
        sockets and remove the ack socket file.

        The data socket file belongs to the plugin's listener, so it is left alone.
        """
        sockets = [sock for sock in (self._push, self._acks) if sock is not None]
        self._push = self._acks = None

        def close_sockets() -> None:
            for sock in sockets:
                sock.close()

        if sockets:
            self._use.close(close_sockets, f"sink-{self.ack_path.name}")
        self.ack_path.unlink(missing_ok=True)

    def _sockets(self) -> tuple[IpcPushDialer, IpcPullListener]:
        push, acks = self._push, self._acks
        if push is None or acks is None:
            raise DataChannelClosed(f"{self._who()}: sink channel is not open and connected")
        return push, acks

    def _send(self, push: IpcPushDialer, payload: bytes, abandon: Callable[[], bool] | None) -> None:
        """Send until the send timeout; the dialer asks between short waits whether to give up, so ``close``
        (and ``abandon``) is noticed within one."""
        use = self._use
        if use.closing:
            raise DataChannelClosed(f"{self._who()}: sink channel closed")

        def give_up() -> bool:
            return use.closing or (abandon is not None and abandon())

        if push.send(payload, self.send_timeout, give_up):
            return
        if use.closing:
            raise DataChannelClosed(f"{self._who()}: sink channel closed")
        if abandon is not None and abandon():
            raise SinkTimeout(f"{self._who()}: the plugin process was replaced; the record was not sent")
        cause = f"; last dial: {push.last_error}" if push.last_error and not push.connected else ""
        raise SinkTimeout(
            f"{self._who()}: no plugin process took the record within {self.send_timeout:g}s "
            f"(is it running?){cause}; the record was not delivered"
        )

    def _wait_ack(self, acks: IpcPullListener, abandon: Callable[[], bool] | None) -> bytes:
        """Wait for the next ack in short slices, so a caller that learns the plugin
        process was replaced (``abandon()`` turns true) can re-send at once
        instead of sitting out the whole ack timeout."""
        deadline = time.monotonic() + self.ack_timeout
        while True:
            if self._use.closing:
                raise DataChannelClosed(f"{self._who()}: sink channel closed")
            ack = acks.recv(SLICE_S)
            if ack is not None:
                return ack
            gave_up = abandon is not None and abandon()
            if gave_up or time.monotonic() >= deadline:
                # Its ack may still come and must not be taken for the next record's.
                self._maybe_stale_ack = True
                if gave_up:
                    raise SinkTimeout(
                        f"{self._who()}: the plugin process was replaced; the record may not have been processed"
                    )
                raise AckTimeout(
                    f"{self._who()}: no ack within {self.ack_timeout:g}s; the record may not have been processed"
                )

    def _drain_acks(self, acks: IpcPullListener) -> None:
        """Discard acks already queued: late ones after a timeout, or unrequested ones."""
        self._maybe_stale_ack = False
        while acks.recv_nowait() is not None:
            pass

    def _who(self) -> str:
        return f"plugin {self.plugin}: sink {self.symbol}"
