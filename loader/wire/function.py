"""Host end of a function channel: calls into one function symbol of a plugin.

The host REP socket *listens* on ``func_{symbol}.ipc`` and the plugin's REQ
dials it, so, as on the control channel, the roles are inverted: the plugin
sends ``handshake`` as a request, every call is the host's *reply* to the
plugin's latest request, and every answer is the plugin's *next request*.
The host can therefore only call while it holds a reply slot, and every
answer hands it the slot for the next call.

What makes this tricky is the plugin's keepalive: a plugin waiting for a call
gives up after a while (5 s in eKuiper's Python SDK) and sends ``handshake``
again, which cancels its previous request.  So:

- A held slot can go stale while the host is idle; a call sent on it is
  silently dropped.  So
- a ``handshake`` received while a call is in flight means the plugin never
  saw the call (it gave up waiting, or a new process replaced it): the call is
  sent again on the handshake's slot.  It cannot have run, so nothing runs twice.
  A stale slot is always followed by such a handshake (that is what made it
  stale), so this alone keeps calls correct.
- Before calling on a slot older than ``STALE_SLOT_AFTER`` we also take the
  keepalives already queued, so they do not pile up and most calls after an
  idle period go out on a live slot.  It cannot catch them all: nng reads the
  next queued request from the pipe only after the previous one was taken, so
  one may still be on its way, and the resend covers it (cheaply: it is
  already there).

Batching extension: a plugin whose handshake declares ``{"batch": 1}``
(our sdk, when the host offered batching) also answers ``ExecBatch``, one
call carrying many rows.  ``exec_batch`` uses it when the plugin declared it
and otherwise makes one ``Exec`` per row; if the plugin process is replaced
by one that does not declare it while an ``ExecBatch`` is in flight, the
rows are sent again one by one.

Calls are synchronous and serialised by the channel's use lock: one REQ
socket carries one request at a time anyway.  They wait in short slices, so
``close`` from another thread ends a waiting call without closing the socket
under it (loader/wire/exclusive.py says why that matters).  The REP end is
the host's own reader of nng's wire format (sdk/protocol/ipc_listen.py): a call
is one write and one read on the caller's thread, with no nng thread hand-off
in between and no event loop round trip.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from loader.wire.addresses import function_path
from loader.wire.codec import (
    DataChannelClosed,
    DataChannelError,
    DataChannelTimeout,
    decode_capabilities,
    decode_exec_batch_result,
    decode_reply,
)
from loader.wire.exclusive import SLICE_S, UseLock
from sdk.protocol.handshake import declares_batch
from sdk.protocol.ipc_listen import IpcRepListener
from sdk.protocol.messages import encode_call, encode_exec, encode_exec_batch

#: A slot older than this may have been replaced by a keepalive: drain before using it.
#: Far below any keepalive interval in use (eKuiper: 5 s), and far above a call's duration.
STALE_SLOT_AFTER = 0.05


class FunctionError(DataChannelError):
    """The plugin answered ``state: false``; ``error`` is its own text."""

    def __init__(self, message: str, error: Any) -> None:
        super().__init__(message)
        self.error = error


class FunctionTimeout(DataChannelTimeout):
    """The plugin did not take or answer a call in time."""


class _BatchRefused(Exception):
    """The process now answering does not declare batches: the batch call was not sent to it."""


class FunctionChannel:
    """REP socket for one function symbol, shared by every rule that calls it."""

    def __init__(self, path: Path, plugin: str, symbol: str, timeout: float = 5.0) -> None:
        self.path = path
        self.plugin = plugin
        self.symbol = symbol
        self.timeout = timeout
        self._socket: IpcRepListener | None = None
        self._use = UseLock()
        #: The timeout of the call in progress, for its error message.
        self._call_timeout = timeout
        self._holds_slot = False
        self._slot_at = 0.0
        #: monotonic time of the last message from the plugin, any kind.
        self.last_message_at = 0.0
        #: handshakes that arrived while no call was in flight (first one included).
        self.handshakes = 0
        #: calls sent again because the plugin had not seen them.
        self.resends = 0
        #: what the plugin's latest handshake declared (``{}`` for eKuiper's SDKs).
        self.capabilities: dict[str, Any] = {}

    @classmethod
    def for_symbol(cls, ipc_dir: Path, plugin: str, symbol: str, timeout: float = 5.0) -> FunctionChannel:
        return cls(function_path(ipc_dir, symbol), plugin, symbol, timeout)

    def open(self) -> None:
        """Listen; call before sending ``start`` (eKuiper's SDK exits if it cannot dial)."""
        if self._socket is not None:
            return
        self.path.unlink(missing_ok=True)
        try:
            sock = IpcRepListener(self.path)
        except OSError as exc:
            raise DataChannelError(f"{self._who()}: cannot listen on {self.path}: {exc}") from exc
        self._use.reopen()
        self._socket = sock

    # --- the three calls of the protocol ----------------------------------

    def validate(self, args: list[Any]) -> None:
        """Ask the plugin whether ``args`` suit the function; FunctionError with its reason if not."""
        self.call("Validate", args)

    def exec(self, args: list[Any], meta: str, timeout: float | None = None) -> Any:
        """Run the function on ``args``; ``meta`` is ``sdk.protocol.messages.exec_meta(...)`` of the call site."""
        return self.call_raw(encode_exec(args, meta), "Exec", timeout)

    def is_aggregate(self) -> bool:
        return bool(self.call("IsAggregate", None))

    @property
    def batch_capable(self) -> bool:
        """The plugin's latest handshake declared that it answers ``ExecBatch``."""
        return declares_batch(self.capabilities)

    def exec_batch(self, rows: list[list[Any]], meta: str, timeout: float | None = None) -> list[Any]:
        """Run the function once per row of arguments; one result per row, in order.

        A row the function failed on holds a ``FunctionError`` instead of a
        value, so one bad row does not fail the others.  One ``ExecBatch`` call
        when the plugin declared batches, else one ``Exec`` per row.  The whole
        call raises only when the channel fails (FunctionTimeout,
        DataChannelClosed) or the plugin refuses the batch as a whole
        (FunctionError).  ``timeout`` is for the whole ``ExecBatch``; per-row
        calls each get the channel's timeout.
        """
        if self.batch_capable:
            try:
                result = self.call_raw(encode_exec_batch(rows, meta), "ExecBatch", timeout, batch=True)
            except _BatchRefused:
                pass
            else:
                try:
                    values, errors = decode_exec_batch_result(result, len(rows))
                except ValueError as exc:
                    raise FunctionError(f"{self._who()}: ExecBatch failed: {exc}", str(exc)) from None
                for index, error in errors.items():
                    values[index] = FunctionError(f"{self._who()}: Exec failed: {error}", error)
                return values
        results: list[Any] = []
        for args in rows:
            try:
                results.append(self.exec(args, meta))
            except FunctionError as exc:
                results.append(exc)
        return results

    def call(self, func: str, arg: Any, timeout: float | None = None) -> Any:
        """Send ``{"func", "arg"}`` and return the plugin's ``result``.

        Raises FunctionError when the plugin answers ``state: false``,
        FunctionTimeout when it does not answer within ``timeout`` seconds
        (default: the channel's), DataChannelClosed when the channel closes.
        """
        return self.call_raw(encode_call(func, arg), func, timeout)

    def call_raw(self, payload: bytes, func: str, timeout: float | None = None, batch: bool = False) -> Any:
        """``call`` with an already encoded payload; ``func`` only names it in errors.

        ``batch``: the payload is a batching-extension call, only for a process
        that declared batches (raises _BatchRefused otherwise).
        """
        state, result = self._round_trip(payload, func, self.timeout if timeout is None else timeout, batch)
        if not state:
            raise FunctionError(f"{self._who()}: {func} failed: {result}", result)
        return result

    def drain(self) -> int:
        """Take keepalives queued while idle, if no call is running; returns how many.

        Calls do this themselves when needed; a caller may also run it now and
        then so a long-idle plugin's keepalives do not pile up unread.
        """
        lock = self._use.lock
        if not lock.acquire(blocking=False):
            return 0
        try:
            return self._drain(self._require_socket())
        finally:
            lock.release()

    def close(self) -> None:
        """End a call in progress (it raises DataChannelClosed), close the socket and remove its file."""
        sock, self._socket = self._socket, None
        if sock is not None:
            self._use.close(sock.close, f"function-{self.path.name}")
        self._holds_slot = False
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> FunctionChannel:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the inverted request/reply dance ---------------------------------

    def _round_trip(self, payload: bytes, func: str, timeout: float, batch: bool = False) -> tuple[bool, Any]:
        deadline = time.monotonic() + timeout
        with self._use.lock:
            sock = self._require_socket()
            self._call_timeout = timeout
            self._take_slot(sock, func, deadline)
            while True:
                if batch and not self.batch_capable:
                    raise _BatchRefused()
                self._send(sock, payload, func, deadline)
                message = self._recv(sock, func, deadline)
                if message[:1] != b"h":
                    return decode_reply(message)
                # The plugin never saw the call: it gave up waiting, or it is a new process.
                self.capabilities = decode_capabilities(message)
                self.resends += 1

    def _take_slot(self, sock: IpcRepListener, func: str, deadline: float) -> None:
        """Make sure we hold a live reply slot before sending a call."""
        if not self._holds_slot:
            # Whatever comes first gives us a slot: the first handshake, a keepalive,
            # or the late answer of a call that timed out earlier (discarded).
            self._note(self._recv(sock, func, deadline))
        elif time.monotonic() - self._slot_at > STALE_SLOT_AFTER:
            self._drain(sock)

    def _drain(self, sock: IpcRepListener) -> int:
        count = 0
        while True:
            message = sock.recv_nowait()
            if message is None:
                return count
            self._slot_now()
            self._note(message)
            count += 1

    def _send(self, sock: IpcRepListener, payload: bytes, func: str, deadline: float) -> None:
        self._holds_slot = False
        while True:
            self._check_open()
            if sock.send(payload, SLICE_S):
                return
            if time.monotonic() >= deadline:
                raise self._timeout(func)

    def _recv(self, sock: IpcRepListener, func: str, deadline: float) -> bytes:
        """The plugin's next request, waiting in slices; a handshake past the deadline counts as a timeout."""
        while True:
            self._check_open()
            message = sock.recv(SLICE_S)
            if message is not None:
                break
            if time.monotonic() >= deadline:
                raise self._timeout(func)
        self._slot_now()
        if message[:1] == b"h" and time.monotonic() > deadline:
            raise self._timeout(func)
        return message

    def _check_open(self) -> None:
        if self._use.closing:
            raise DataChannelClosed(f"{self._who()}: function channel closed")

    def _timeout(self, func: str) -> FunctionTimeout:
        return FunctionTimeout(
            f"{self._who()}: no answer to {func} within {self._call_timeout:g}s "
            "(is the plugin running and has the function been started?)"
        )

    def _slot_now(self) -> None:
        self._holds_slot = True
        self._slot_at = self.last_message_at = time.monotonic()

    def _note(self, message: bytes) -> None:
        """Count handshakes received outside a call (keepalives, new processes) and note what they declare."""
        if message[:1] == b"h":
            self.handshakes += 1
            self.capabilities = decode_capabilities(message)

    def _require_socket(self) -> IpcRepListener:
        if self._socket is None:
            raise DataChannelClosed(f"{self._who()}: function channel is not open")
        return self._socket

    def _who(self) -> str:
        return f"plugin {self.plugin}: function {self.symbol}"
