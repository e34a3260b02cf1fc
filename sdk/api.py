"""What a plugin author writes against: Source, Sink, Function, Context, PluginConfig.

The names and method signatures are those of eKuiper's Python SDK, so porting
a plugin means changing its import.  Only the methods a symbol cannot do
without are abstract; the rest default to doing nothing, which is what most
plugins would write by hand anyway.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from sdk.protocol.control import TYPE_FUNC, TYPE_SINK, TYPE_SOURCE
from sdk.protocol.messages import ACK_OK, encode_ack, encode_source_error, encode_source_record

#: A sending function: takes one encoded message.
Sender = Callable[[bytes], object]


def _unavailable(what: str, who: str) -> Sender:
    def send(_: bytes) -> None:
        raise RuntimeError(f"{what} is only available to {who}")

    return send


class Context:
    """The running instance of a symbol, as seen from inside the plugin.

    ``emit`` is the hot path of a source: one ``json.dumps`` and one send,
    with the sender bound once at construction so no lookup or lock is paid
    per record.  Under the batching extension a ``batcher`` (with ``record``
    and ``error``, see sdk/batching.py) takes the records instead.
    """

    def __init__(
        self,
        rule_id: str,
        op_id: str,
        instance_id: int,
        logger: logging.Logger,
        emit: Sender | None = None,
        ack: Sender | None = None,
        batcher: Any = None,
    ) -> None:
        self._rule_id = rule_id
        self._op_id = op_id
        self._instance_id = instance_id
        self._logger = logger
        self._emit = emit or _unavailable("emit", "sources")
        self._ack = ack or _unavailable("ack", "sinks")
        self._record = batcher.record if batcher is not None else self._send_record
        self._error = batcher.error if batcher is not None else self._send_error

    def get_rule_id(self) -> str:
        return self._rule_id

    def get_op_id(self) -> str:
        return self._op_id

    def get_instance_id(self) -> int:
        return self._instance_id

    def get_logger(self) -> logging.Logger:
        """A ``logging.Logger`` whose lines carry this instance's symbol, rule, op, instance."""
        return self._logger

    def emit(self, message: Any, meta: Any) -> None:
        """Send one record (a dict, or a list of dicts) with its metadata (a dict or None)."""
        self._record(message, meta)

    def emit_error(self, error: str) -> None:
        """Tell the host this source hit an error; the rule decides what to do with it."""
        self._error(str(error))

    def _send_record(self, message: Any, meta: Any) -> None:
        self._emit(encode_source_record(message, meta))

    def _send_error(self, error: str) -> None:
        self._emit(encode_source_error(error))

    def ack_ok(self) -> None:
        """Acknowledge the message being collected (sinks configured with requireAck)."""
        self._ack(ACK_OK)

    def ack_error(self, error: str) -> None:
        """Report that the message being collected could not be delivered."""
        self._ack(encode_ack(str(error)))


class Source(ABC):
    """Produces records: ``open`` runs in its own thread until ``close`` is called."""

    def configure(self, datasource: str, conf: dict) -> None:
        """Check and keep the configuration; raise to refuse the start command."""

    @abstractmethod
    def open(self, ctx: Context) -> None:
        """Emit records with ``ctx.emit`` until closed; may block for the instance's life."""

    def close(self, ctx: Context) -> None:
        """Make ``open`` return and release resources; called from another thread."""


class Sink(ABC):
    """Consumes messages: ``collect`` is called once per message, in order."""

    def configure(self, conf: dict) -> None:
        """Check and keep the configuration; raise to refuse the start command."""

    def open(self, ctx: Context) -> None:
        """Connect to whatever the sink writes to; called once before the first collect."""

    @abstractmethod
    def collect(self, ctx: Context, data: bytes) -> None:
        """Handle one message: its raw JSON bytes, exactly as eKuiper's Python SDK hands them over.

        As eKuiper sends them, a message is by default one result of the rule,
        a JSON array of rows (``[{"n": 1}]``); with the action's
        ``sendSingle: true`` it is one row, a JSON object; a ``dataTemplate``
        makes it whatever the template writes.  Decode with ``json.loads`` and
        accept both an array and an object.
        """

    def close(self, ctx: Context) -> None:
        """Release resources; called after the last collect."""


class Function(ABC):
    """A scalar or aggregate function callable from SQL."""

    def validate(self, args: list[Any]) -> str:
        """Check the argument expressions at rule creation; return "" when valid, else the reason."""
        return ""

    @abstractmethod
    def exec(self, args: list[Any], ctx: Context) -> Any:
        """Compute the result from the argument values; raise to report an error."""

    def is_aggregate(self) -> bool:
        """True when the function receives a whole group per argument rather than one value."""
        return False


Factory = Callable[[], Any]


class PluginConfig:
    """The plugin's name and its symbols, each a factory (usually the class) building one instance."""

    def __init__(
        self,
        name: str,
        sources: Mapping[str, Factory] | None = None,
        sinks: Mapping[str, Factory] | None = None,
        functions: Mapping[str, Factory] | None = None,
    ) -> None:
        self.name = name
        self.sources = dict(sources or {})
        self.sinks = dict(sinks or {})
        self.functions = dict(functions or {})

    def factory(self, plugin_type: str, symbol: str) -> Factory:
        """The factory of a symbol, or a LookupError that lists what the plugin does have."""
        table = {TYPE_SOURCE: self.sources, TYPE_SINK: self.sinks, TYPE_FUNC: self.functions}.get(plugin_type)
        if table is None:
            raise LookupError(f"unknown pluginType {plugin_type!r}: expected source, sink or func")
        if symbol not in table:
            have = ", ".join(sorted(table)) or "none"
            raise LookupError(f"plugin {self.name} has no {plugin_type} named {symbol!r} (it has: {have})")
        return table[symbol]
