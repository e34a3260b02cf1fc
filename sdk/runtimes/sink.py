"""A running sink instance: records (or batches) in on its PULL socket, an ack per message out.

With ``requireAck`` each message is acknowledged after the user's ``collect``
returned (an error ack carries its text); ``AckGate`` lets the host keep up
to its ack window of messages in flight (docs/protocol.md, "Ack window").
When the host offered batching, a batch message is split and collected record
by record, each exactly as it would have been sent alone (sdk/batching.py).
A sink that raises never kills the process: the error goes back as the ack.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from sdk import channels
from sdk.api import Context, Factory
from sdk.args import RuntimeArgs
from sdk.protocol.control import Control
from sdk.protocol.ipc_listen import IpcPullListener
from sdk.protocol.ipc_wire import IpcPushDialer
from sdk.protocol.messages import (
    ACK_OK,
    ack_error_text,
    encode_ack,
    encode_batch_ack,
    encode_batch_error_ack,
    split_sink_batch,
)
from sdk.protocol.names import ack_name, data_name
from sdk.runtimes.common import ErrorLog, StartError, build_symbol, close_symbol, error_text, instance_logger

_log = logging.getLogger("sdk.runtime")


class AckGate:
    """Lets exactly one ack per message through, and only when the host asked for acks.

    The plugin may ack from ``collect`` (or, while it runs, from another
    thread); whatever it did not ack the runtime acks when ``collect``
    returns or raises, so a host waiting for the ack never hangs.
    """

    def __init__(self, send: Callable[[bytes], object] | None) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._pending = False
        #: While collecting a record of a batch, the plugin's ack is kept here instead of sent.
        self._capturing = False
        self._captured: bytes | None = None

    @property
    def active(self) -> bool:
        """The host asked for acks (``requireAck``)."""
        return self._send is not None

    def begin(self) -> None:
        with self._lock:
            self._pending = True

    def begin_record(self) -> None:
        """A record of a batch is about to be collected: keep its first ack, do not send it."""
        with self._lock:
            self._pending = self._capturing = True
            self._captured = None

    def end_record(self) -> bytes | None:
        """The record's collect is over: the ack the plugin made for it (None: it made none)."""
        with self._lock:
            captured, self._captured = self._captured, None
            self._pending = self._capturing = False
            return captured

    def send(self, payload: bytes) -> None:
        """Send the message's ack unless it was sent already.

        Called by the plugin (ctx.ack_ok / ack_error) and then by the runtime
        once collect is over, so the runtime's ack only goes out when the
        plugin did not ack.
        """
        if self._send is None:
            return
        with self._lock:
            pending, self._pending = self._pending, False
            if pending and self._capturing:
                self._captured = payload
                return
        if pending:
            self._send(payload)


def requires_ack(config: dict) -> bool:
    return config.get("requireAck") in (True, "true")


class SinkRuntime:
    """A sink instance: PULL listener for data, PUSH dialer for acks, collect in a thread."""

    def __init__(self, control: Control, factory: Factory, args: RuntimeArgs) -> None:
        self.control = control
        self._args = args
        self._sink = build_symbol(control, factory)
        self._stopping = False
        self._data: IpcPullListener | None = None
        self._ack: IpcPushDialer | None = None
        self._ack_lock = threading.Lock()
        self._gate = AckGate(None)
        self._ack_lost = False
        self._ctx: Context | None = None
        self._thread: threading.Thread | None = None
        self.errors = ErrorLog(control, "sink collect")

    def start(self) -> None:
        control = self.control
        try:
            self._sink.configure(control.config)
        except Exception as err:
            raise StartError(f"{control.describe()}: configure failed: {error_text(err)}") from err
        self._connect()
        logger = instance_logger(control)
        self._ctx = Context(control.rule_id, control.op_id, control.instance_id, logger, ack=self._gate.send)
        self._thread = threading.Thread(target=self._run, name=f"sink-{control.key}", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        control = self.control
        ipc_dir, names = self._args.ipc_dir, (control.rule_id, control.op_id, control.instance_id)
        try:
            self._data = channels.pull_listener(os.path.join(ipc_dir, data_name(*names)))
            if requires_ack(control.config):
                self._ack = channels.push_dialer(os.path.join(ipc_dir, ack_name(*names)))
                self._gate = AckGate(self._send_ack)
        except ConnectionError as err:
            if self._data is not None:
                self._data.close()
            raise StartError(f"{control.describe()}: {err}") from err

    def _send_ack(self, payload: bytes) -> None:
        """Send an ack; one the host no longer takes is not the plugin's error.

        When a rule stops (or the loader goes away) while a message is being
        collected, the host's ack socket is gone and the send times out. That
        must not reach ``collect`` as an exception: the host sends the message
        again if it still wants it (at least once). Logged once per instance.
        """
        assert self._ack is not None
        with self._ack_lock:  # a sink may ack from a thread of its own
            sent = self._ack.send(payload, self._args.send_timeout_ms / 1000, self._is_stopping)
        if not sent:
            if not self._ack_lost:
                self._ack_lost = True
                _log.warning(
                    "ack not delivered",
                    extra={
                        "sdk": {
                            **self.control.log_context(),
                            "error": f"not taken within {self._args.send_timeout_ms} ms",
                            "note": "the host is not taking acks (rule stopping?); it resends what it wants",
                        }
                    },
                )

    def _is_stopping(self) -> bool:
        return self._stopping

    def _run(self) -> None:
        sock = self._data
        assert sock is not None, "start() connects before the thread runs"
        open_error = self._open()
        batching = self._args.batch is not None
        slice_s = channels.SLICE_MS / 1000
        while not self._stopping:
            data = sock.recv(slice_s)
            if data is None:
                continue
            if batching and data[:1] == b"#":
                self._collect_batch(data, open_error)
                continue
            self._gate.begin()
            if open_error is not None:
                self._finish(encode_ack(open_error))
                continue
            try:
                self._sink.collect(self._ctx, data)
            except Exception as err:
                self.errors.record(err)
                self._finish(encode_ack(error_text(err)))
            else:
                self._finish(ACK_OK)

    def _collect_batch(self, data: bytes, open_error: str | None) -> None:
        """A batch message: ``collect`` once per record, in order, then ONE ack for the whole batch.

        The ack is ``{}`` when every record was collected without error (and
        not acked with an error), else ``{"error": "<k> of <n> records failed;
        first: record <i>: <text>", "failed": <k>}``.  A sink stopped in the
        middle of a batch collects no further record and adds ``"done": <d>``,
        the records handled: the host sends the others to the next process.
        """
        gate = self._gate
        try:
            records = split_sink_batch(data) or []  # a batch message: never None here
        except ValueError as err:
            self.errors.record(err, "sink batch")
            gate.begin()
            self._finish(encode_ack(f"bad batch message: {err}"))
            return
        if open_error is not None:
            gate.begin()
            self._finish(encode_batch_error_ack(len(records), len(records), open_error))
            return
        collect, ctx = self._sink.collect, self._ctx
        if not gate.active:  # no acks wanted: the fast path
            for record in records:
                try:
                    collect(ctx, record)
                except Exception as err:
                    self.errors.record(err)
            return
        failed, first, done = 0, "", len(records)
        for index, record in enumerate(records):
            if self._stopping:
                done = index  # the host sends the rest again, to the next process
                break
            gate.begin_record()
            try:
                collect(ctx, record)
            except Exception as err:
                gate.end_record()
                self.errors.record(err)
                error: str | None = error_text(err)
            else:
                acked = gate.end_record()
                error = None if acked is None else ack_error_text(acked)
            if error is not None:
                failed += 1
                if failed == 1:
                    first = f"record {index}: {error}"
        gate.begin()
        self._finish(encode_batch_ack(failed, done, len(records), first))

    def _open(self) -> str | None:
        """Open the sink; on failure every message is answered with this error instead of collected."""
        try:
            self._sink.open(self._ctx)
            return None
        except Exception as err:
            self.errors.record(err, "sink open")
            return f"sink open failed: {error_text(err)}"

    def _finish(self, payload: bytes) -> None:
        """The runtime's ack once collect is over: a no-op if the plugin acked; send failures are counted."""
        try:
            self._gate.send(payload)
        except Exception as err:
            if not self._stopping:
                self.errors.record(err)

    def stop(self, timeout: float) -> None:
        """The receiving thread notices within one receive slice; the sockets close after it ended."""
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._ctx is not None:
            close_symbol(self.control, lambda: self._sink.close(self._ctx))
        channels.close_after(self._thread, [self._data, self._ack], 0)
