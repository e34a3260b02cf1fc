"""Decoding the host's commands and the Control they carry.

Everything the host sends is validated here, once, so the runtimes work
with typed values and a malformed command turns into a readable reply
instead of a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sdk.api import TYPE_FUNC, TYPE_SINK, TYPE_SOURCE

CMD_START = "start"
CMD_STOP = "stop"


class CommandError(ValueError):
    """The command cannot be understood; its text is sent back to the host."""


@dataclass(frozen=True)
class Control:
    """The Control JSON of a start or stop command."""

    symbol: str
    plugin_type: str
    rule_id: str
    op_id: str
    instance_id: Any
    datasource: str = ""
    config: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Registry key of a running instance; functions have one per symbol."""
        if self.plugin_type == TYPE_FUNC:
            return f"func_{self.symbol}"
        return f"{self.rule_id}_{self.op_id}_{self.instance_id}_{self.symbol}"

    @property
    def channel_name(self) -> str:
        """Socket file stem of a source or sink instance: ``{ruleId}_{opId}_{instanceId}``."""
        return f"{self.rule_id}_{self.op_id}_{self.instance_id}"

    def describe(self) -> str:
        if self.plugin_type == TYPE_FUNC:
            return f"function {self.symbol}"
        kind = "source" if self.plugin_type == TYPE_SOURCE else "sink"
        return f"{kind} {self.symbol} of rule {self.rule_id} op {self.op_id} instance {self.instance_id}"

    def log_context(self) -> dict[str, Any]:
        if self.plugin_type == TYPE_FUNC:
            return {"symbol": self.symbol}
        return {"symbol": self.symbol, "rule": self.rule_id, "op": self.op_id, "instance": self.instance_id}


def decode_command(payload: bytes) -> tuple[str, Control]:
    """``{"cmd": ..., "arg": "<Control JSON>"}`` -> (cmd, Control)."""
    try:
        command = json.loads(payload)
    except ValueError as err:
        raise CommandError(f"command is not JSON: {err}") from None
    if not isinstance(command, dict) or command.get("cmd") not in (CMD_START, CMD_STOP):
        raise CommandError(f"unknown command {payload[:200]!r}: expected cmd start or stop")
    arg = command.get("arg")
    try:
        raw = json.loads(arg) if isinstance(arg, (str, bytes)) else arg
    except ValueError as err:
        raise CommandError(f"command arg is not JSON: {err}") from None
    return command["cmd"], decode_control(raw)


def decode_control(raw: Any) -> Control:
    """Validate a Control object; accepts both ``datasource`` (Python SDK) and ``dataSource`` (Go SDK)."""
    if not isinstance(raw, dict):
        raise CommandError("control must be a JSON object")
    symbol = raw.get("symbolName")
    plugin_type = raw.get("pluginType")
    if not isinstance(symbol, str) or not _safe(symbol):
        raise CommandError(f"invalid symbolName {symbol!r}")
    if plugin_type not in (TYPE_SOURCE, TYPE_SINK, TYPE_FUNC):
        raise CommandError(f"invalid pluginType {plugin_type!r}: expected source, sink or func")
    meta = raw.get("meta") or {}
    if not isinstance(meta, dict):
        raise CommandError("control meta must be an object")
    rule_id, op_id = str(meta.get("ruleId", "")), str(meta.get("opId", ""))
    if plugin_type != TYPE_FUNC and not (_safe(rule_id) and _safe(op_id)):
        raise CommandError(f"{plugin_type} {symbol}: meta needs a ruleId and an opId usable in a socket name")
    instance_id = meta.get("instanceId", 0)
    if plugin_type != TYPE_FUNC and not _safe(str(instance_id)):
        raise CommandError(f"{plugin_type} {symbol}: invalid instanceId {instance_id!r}")
    datasource = raw.get("datasource", raw.get("dataSource", ""))
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise CommandError(f"{plugin_type} {symbol}: config must be an object")
    return Control(
        symbol=symbol,
        plugin_type=plugin_type,
        rule_id=rule_id,
        op_id=op_id,
        instance_id=instance_id,
        datasource="" if datasource is None else str(datasource),
        config=config,
    )


def _safe(name: str) -> bool:
    """Non-empty and unable to leave the IPC directory."""
    return bool(name) and "/" not in name and "\0" not in name
