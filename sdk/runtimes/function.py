"""A running function instance: the REQ socket dialing the host's REP, every call the host's reply
and every answer the plugin's next request (docs/protocol.md). A function that raises answers
``state: false`` with its text; ``ExecBatch`` is answered row by row inside one reply.
"""

from __future__ import annotations

import threading
from typing import Any

import pynng

from sdk import channels
from sdk.api import Context, Factory
from sdk.args import RuntimeArgs
from sdk.log import context_logger
from sdk.protocol.control import Control
from sdk.protocol.handshake import handshake_message
from sdk.protocol.jsonenc import compact
from sdk.protocol.messages import (
    decode_call,
    decode_exec_meta,
    encode_exec_batch_reply,
    encode_reply,
    split_exec_arg,
)
from sdk.protocol.names import function_name
from sdk.runtimes.common import ErrorLog, StartError, build_symbol, error_text


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
        self._function = build_symbol(control, factory)
        self._socket: pynng.Req0 | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._contexts: dict[str, Context] = {}
        self.errors = ErrorLog(control, "function")
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
