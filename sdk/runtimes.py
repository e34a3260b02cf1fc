"""Running instances of sources, sinks and functions.

Each runtime owns its sockets and one thread.  ``start`` runs in the control
thread and does everything that can fail (build, configure, connect) so the
start command's reply tells the host whether the instance really runs;
``stop`` closes the user's symbol and then its sockets, once the thread that
uses them has ended (``channels.close_after``).

Errors raised by plugin code never kill the process: a source reports them
to the host with ``emit_error``, a sink with an error ack, a function with a
``state: false`` reply (per row, inside an ``ExecBatch`` reply).

When the host offered batching (``args.batch``), a source sends batch
messages, a sink accepts them, and a function answers ``ExecBatch``; plugin
code sees no difference (sdk/batching.py).  Only the first one of an instance is logged with its
traceback, so a symbol failing on every record cannot flood the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import pynng

from sdk import channels
from sdk.api import Context, Factory
from sdk.args import RuntimeArgs
from sdk.batching import SourceBatcher
from sdk.log import context_logger
from sdk.protocol.control import Control
from sdk.protocol.handshake import handshake_message
from sdk.protocol.jsonenc import compact
from sdk.protocol.messages import (
    ACK_OK,
    ack_error_text,
    decode_call,
    decode_exec_meta,
    encode_ack,
    encode_batch_ack,
    encode_batch_error_ack,
    encode_exec_batch_reply,
    encode_reply,
    split_exec_arg,
    split_sink_batch,
)
from sdk.protocol.names import ack_name, data_name, function_name

_log = logging.getLogger("sdk.runtime")


class StartError(Exception):
    """A start command failed; the text is the reply sent to the host."""


def error_text(err: BaseException) -> str:
    """``Type: message`` -- readable without a traceback, still says what kind of failure."""
    message = str(err)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _build(control: Control, factory: Factory) -> Any:
    try:
        return factory()
    except Exception as err:
        raise StartError(f"{control.describe()}: cannot create the symbol: {error_text(err)}") from err


def _instance_logger(control: Control) -> logging.Logger:
    return context_logger(control.symbol, control.rule_id, control.op_id, control.instance_id)


_LATER_ERRORS = "later errors of this instance are counted, not logged"


class _ErrorLog:
    """Logs the first error of an instance with its traceback and counts the rest."""

    def __init__(self, control: Control, what: str) -> None:
        self._context = control.log_context()
        self._what = what
        self.count = 0

    def record(self, err: BaseException, during: str | None = None) -> None:
        if self.count == 0:
            details = {"during": during or self._what, "error": error_text(err), "note": _LATER_ERRORS}
            _log.error("symbol raised", exc_info=err, extra={"sdk": {**self._context, **details}})
        self.count += 1


class SourceRuntime:
    """A source instance: ``open`` runs in a thread and emits into a PUSH socket."""

    def __init__(self, control: Control, factory: Factory, args: RuntimeArgs) -> None:
        self.control = control
        self._args = args
        self._source = _build(control, factory)
        self._stopping = False
        self._socket: pynng.Push0 | None = None
        self._batcher: SourceBatcher | None = None
        self._ctx: Context | None = None
        self._thread: threading.Thread | None = None
        self.errors = _ErrorLog(control, "source open")

    def start(self) -> None:
        control = self.control
        try:
            self._source.configure(control.datasource, control.config)
        except Exception as err:
            raise StartError(f"{control.describe()}: configure failed: {error_text(err)}") from err
        url = channels.address(self._args.ipc_dir, data_name(control.rule_id, control.op_id, control.instance_id))
        try:
            self._socket = channels.push_dialer(url, self._args.send_timeout_ms)
        except ConnectionError as err:
            raise StartError(f"{control.describe()}: {err}") from err
        logger = _instance_logger(control)
        emit = self._socket.send if self._args.protocol < 1 else self._waiting_send(self._socket)
        batch = self._args.batch
        if batch is not None:
            self._batcher = SourceBatcher(
                emit, batch.max_records, batch.linger_ms / 1000, self._batch_failed, name=f"batch-{control.key}"
            )
        self._ctx = Context(
            control.rule_id, control.op_id, control.instance_id, logger, emit=emit, batcher=self._batcher
        )
        self._thread = threading.Thread(target=self._run, name=f"source-{control.key}", daemon=True)
        self._thread.start()

    def _waiting_send(self, sock: pynng.Push0) -> Callable[[bytes], None]:
        """Under our loader, a full host means "wait", not "drop the record".

        eKuiper's SDK gives up on a record after ``sendTimeout`` and the source
        dies; our host buffers per rule and applies backpressure while, for
        example, a sink plugin restarts, so a source keeps trying until it is
        stopped.  Plain eKuiper hosts keep the eKuiper behaviour.
        """
        send = sock.send

        def emit(payload: bytes) -> None:
            while True:
                try:
                    send(payload)
                    return
                except pynng.Timeout:
                    if self._stopping:
                        raise

        return emit

    def _batch_failed(self, err: BaseException) -> None:
        """A batch the flusher could not send (its records are lost, as a failed emit's)."""
        if not self._stopping:
            self.errors.record(err, "sending a batch")

    def _run(self) -> None:
        try:
            self._source.open(self._ctx)
        except Exception as err:
            if not self._stopping:
                self._report(err)
            return
        if self._batcher is not None and not self._stopping:
            try:
                self._batcher.flush()
            except Exception as err:
                self._batch_failed(err)
        if not self._stopping:
            # A finite source: keep the socket open so queued records still reach the host.
            note = "open returned; the instance stays until stopped"
            _log.info("source finished", extra={"sdk": {**self.control.log_context(), "note": note}})

    def _report(self, err: Exception) -> None:
        self.errors.record(err)
        if self._ctx is None:
            return
        try:
            self._ctx.emit_error(error_text(err))
        except Exception as send_err:
            _log.warning(
                "error report failed",
                extra={"sdk": {**self.control.log_context(), "error": error_text(send_err)}},
            )

    def stop(self, timeout: float) -> None:
        self._stopping = True
        if self._ctx is not None:
            _close_symbol(self.control, lambda: self._source.close(self._ctx))
        if self._thread is not None:
            self._thread.join(timeout)
        if self._batcher is not None:
            self._batcher.close()  # records emitted before the stop still go out
        channels.close_after(self._thread, [self._socket], 0)


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
        self._sink = _build(control, factory)
        self._stopping = False
        self._data: pynng.Pull0 | None = None
        self._ack: pynng.Push0 | None = None
        self._gate = AckGate(None)
        self._ack_lost = False
        self._ctx: Context | None = None
        self._thread: threading.Thread | None = None
        self.errors = _ErrorLog(control, "sink collect")

    def start(self) -> None:
        control = self.control
        try:
            self._sink.configure(control.config)
        except Exception as err:
            raise StartError(f"{control.describe()}: configure failed: {error_text(err)}") from err
        self._connect()
        logger = _instance_logger(control)
        self._ctx = Context(control.rule_id, control.op_id, control.instance_id, logger, ack=self._gate.send)
        self._thread = threading.Thread(target=self._run, name=f"sink-{control.key}", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        control = self.control
        ipc_dir, names = self._args.ipc_dir, (control.rule_id, control.op_id, control.instance_id)
        try:
            self._data = channels.pull_listener(channels.address(ipc_dir, data_name(*names)))
            if requires_ack(control.config):
                self._ack = channels.push_dialer(
                    channels.address(ipc_dir, ack_name(*names)), self._args.send_timeout_ms
                )
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
        try:
            self._ack.send(payload)
        except (pynng.Timeout, pynng.Closed) as err:
            if not self._ack_lost:
                self._ack_lost = True
                _log.warning(
                    "ack not delivered",
                    extra={
                        "sdk": {
                            **self.control.log_context(),
                            "error": error_text(err),
                            "note": "the host is not taking acks (rule stopping?); it resends what it wants",
                        }
                    },
                )

    def _run(self) -> None:
        sock = self._data
        assert sock is not None, "start() connects before the thread runs"
        open_error = self._open()
        batching = self._args.batch is not None
        while not self._stopping:
            try:
                data = sock.recv()
            except pynng.Timeout:
                continue
            except pynng.NNGException as err:
                if self._stopping:
                    return
                self.errors.record(err)
                time.sleep(channels.RETRY_PAUSE_S)
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
        except pynng.NNGException as err:
            if not self._stopping:
                self.errors.record(err)

    def stop(self, timeout: float) -> None:
        """The receiving thread notices within one receive slice; the sockets close after it ended."""
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._ctx is not None:
            _close_symbol(self.control, lambda: self._sink.close(self._ctx))
        channels.close_after(self._thread, [self._data, self._ack], 0)


def _reply(state: bool, result: Any) -> bytes:
    try:
        return encode_reply(state, result)
    except (TypeError, ValueError) as err:
        return encode_reply(False, f"result is not JSON: {error_text(err)}")


class FunctionRuntime:
    """A function symbol: one inverted REQ channel shared by every rule calling it.

    ``users`` counts start commands not yet matched by a stop; the channel
    closes when the last user stops.
    """

    def __init__(self, control: Control, factory: Factory, args: RuntimeArgs) -> None:
        self.control = control
        self._args = args
        self._function = _build(control, factory)
        self._socket: pynng.Req0 | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._contexts: dict[str, Context] = {}
        self.errors = _ErrorLog(control, "function")
        self.users = 1

    def start(self) -> None:
        url = channels.address(self._args.ipc_dir, function_name(self.control.symbol))
        try:
            self._socket = channels.req_dialer(url, self._args.keepalive_ms)
        except ConnectionError as err:
            raise StartError(f"{self.control.describe()}: {err}") from err
        handshake = handshake_message(self._args.capabilities)
        self._thread = threading.Thread(
            target=channels.serve_inverted,
            args=(self._socket, self.handle, self._closing, handshake),
            name=f"func-{self.control.symbol}",
            daemon=True,
        )
        self._thread.start()

    def handle(self, payload: bytes) -> bytes:
        """Answer one call; never raises (a failure becomes ``state: false``)."""
        try:
            name, arg = decode_call(payload)
            if name == "Validate":
                problem = self._function.validate(arg)
                return _reply(True, "") if not problem else _reply(False, str(problem))
            if name == "Exec":
                values, ctx = self._split_exec_arg(arg)
                return _reply(True, self._function.exec(values, ctx))
            if name == "ExecBatch" and self._args.batch is not None:
                rows, ctx = self._split_exec_arg(arg)
                return self._exec_batch(rows, ctx)
            if name == "IsAggregate":
                return _reply(True, bool(self._function.is_aggregate()))
            return _reply(False, f"unknown function call {name!r}: expected Validate, Exec or IsAggregate")
        except Exception as err:
            self.errors.record(err)
            return _reply(False, f"{self.control.symbol}: {error_text(err)}")

    def _exec_batch(self, rows: list[Any], ctx: Context) -> bytes:
        """``ExecBatch``: ``exec`` once per row, in order; a failing row does not fail the others.

        Reply: ``{"state": true, "result": {"values": [...], "errors": [[row, "text"], ...]}}``;
        a failed row's value is null and its error text is as ``Exec`` would report it.
        """
        execute = self._function.exec
        values: list[Any] = []
        errors: list[list[Any]] = []
        for index, row in enumerate(rows):
            try:
                if not isinstance(row, list):
                    raise TypeError(f"ExecBatch row {index} is not a list of arguments")
                values.append(execute(row, ctx))
            except Exception as err:
                self.errors.record(err)
                values.append(None)
                errors.append([index, f"{self.control.symbol}: {error_text(err)}"])
        try:
            return encode_exec_batch_reply(values, errors)
        except (TypeError, ValueError, RecursionError):
            return self._exec_batch_reply_slowly(values, errors)

    def _exec_batch_reply_slowly(self, values: list[Any], errors: list[list[Any]]) -> bytes:
        """Some value is not JSON: make those rows errors, keep the others."""
        for index, value in enumerate(values):
            try:
                compact(value)
            except (TypeError, ValueError, RecursionError) as err:
                values[index] = None
                errors.append([index, f"{self.control.symbol}: result is not JSON: {error_text(err)}"])
        errors.sort(key=lambda entry: entry[0])
        return encode_exec_batch_reply(values, errors)

    def _split_exec_arg(self, arg: Any) -> tuple[list[Any], Context]:
        """Exec's arg is the values followed by the JSON of {ruleId, opId, instanceId, funcId}."""
        values, key = split_exec_arg(arg)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._context_for(key)
            self._contexts[key] = ctx
        return values, ctx

    def _context_for(self, meta: str) -> Context:
        rule, op, instance = decode_exec_meta(meta)
        logger = context_logger(self.control.symbol, rule, op, instance)
        return Context(rule, op, instance, logger)

    def stop(self, timeout: float) -> None:
        """The serving thread ends when its pending receive returns (at the latest after the
        keepalive interval); its socket is closed then, not under it."""
        self._closing.set()
        channels.close_after(self._thread, [self._socket], 0)


def _close_symbol(control: Control, close: Callable[[], object]) -> None:
    try:
        close()
    except Exception as err:
        _log.error(
            "close raised",
            exc_info=err,
            extra={"sdk": {**control.log_context(), "error": error_text(err)}},
        )


class Runtime(Protocol):
    """What the control loop needs of a running symbol instance."""

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None: ...


RUNTIMES: dict[str, Callable[[Control, Factory, RuntimeArgs], Runtime]] = {
    "source": SourceRuntime,
    "sink": SinkRuntime,
    "func": FunctionRuntime,
}
