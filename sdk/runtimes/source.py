"""A running source instance: the user's source emits on its own thread, the runtime sends each
record (or, when the host offered batching, batches of them) on the PUSH socket. An exception from
the source is reported to the host with ``emit_error``, never raised out of the process.

The PUSH end is sdk/protocol/ipc_wire.py's dialer, not pynng's: a record's send is
one system call on the emitting thread, where pynng cost more than the rest of
the record's trip (docs/benchmarks.md).  The host (our loader, or eKuiper's
nng listener) sees an ordinary nng PUSH.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from sdk import channels
from sdk.api import Context, Factory
from sdk.args import RuntimeArgs
from sdk.batching import SourceBatcher
from sdk.protocol.control import Control
from sdk.protocol.ipc_wire import IpcPushDialer
from sdk.protocol.names import data_name
from sdk.runtimes.common import ErrorLog, StartError, build_symbol, close_symbol, error_text, instance_logger

_log = logging.getLogger("sdk.runtime")


class SourceRuntime:
    """A source instance: ``open`` runs in a thread and emits into a PUSH socket."""

    def __init__(self, control: Control, factory: Factory, args: RuntimeArgs) -> None:
        self.control = control
        self._args = args
        self._source = build_symbol(control, factory)
        self._stopping = False
        self._socket: IpcPushDialer | None = None
        self._batcher: SourceBatcher | None = None
        self._ctx: Context | None = None
        self._thread: threading.Thread | None = None
        self.errors = ErrorLog(control, "source open")

    def start(self) -> None:
        control = self.control
        try:
            self._source.configure(control.datasource, control.config)
        except Exception as err:
            raise StartError(f"{control.describe()}: configure failed: {error_text(err)}") from err
        path = os.path.join(self._args.ipc_dir, data_name(control.rule_id, control.op_id, control.instance_id))
        try:
            self._socket = dialer = channels.push_dialer(path)
        except ConnectionError as err:
            raise StartError(f"{control.describe()}: {err}") from err
        logger = instance_logger(control)
        emit = self._sender(dialer)
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

    def _sender(self, dialer: IpcPushDialer) -> Callable[[bytes], None]:
        """How a record is sent: whole, by one thread at a time (a source may emit from several).

        Under our loader, a full host means "wait", not "drop the record":
        eKuiper's SDK gives up on a record after ``sendTimeout`` and the source
        dies; our host buffers per rule and applies backpressure while, for
        example, a sink plugin restarts, so a source keeps trying until it is
        stopped.  Plain eKuiper hosts keep the eKuiper behaviour: TimeoutError.
        """
        lock = threading.Lock()
        send = dialer.send
        timeout = self._args.send_timeout_ms / 1000
        patient = self._args.protocol >= 1

        def stopping() -> bool:
            return self._stopping

        def emit(payload: bytes) -> None:
            with lock:
                while not send(payload, timeout, stopping):
                    if self._stopping or not patient:
                        raise TimeoutError(f"the host took no record within {timeout:g}s")

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
            close_symbol(self.control, lambda: self._source.close(self._ctx))
        if self._thread is not None:
            self._thread.join(timeout)
        if self._batcher is not None:
            self._batcher.close()  # records emitted before the stop still go out
        channels.close_after(self._thread, [self._socket], 0)
