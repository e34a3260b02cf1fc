"""The control channel's commands: ``start`` and ``stop``, each carrying a Control.

The host sends ``{"cmd": "start"|"stop", "arg": "<Control JSON>"}``, the
Control as a JSON *string* inside the JSON, as eKuiper does.  The Control's
keys are eKuiper's: ``symbolName``, ``meta`` (``ruleId``, ``opId``,
``instanceId``), ``pluginType``, ``config`` and, for a source, the data
source under both spellings: ``dataSource`` (Go SDK) and ``datasource``
(Python SDK).

The plugin validates a command once, here, so its runtimes work with typed
values and a malformed command turns into a readable reply instead of a
traceback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdk.protocol.names import function_key, instance_key

CMD_START = "start"
CMD_STOP = "stop"

TYPE_SOURCE = "source"
TYPE_SINK = "sink"
TYPE_FUNC = "func"


class CommandError(ValueError):
    """The command cannot be understood; its text is sent back to the host."""


@dataclass(frozen=True)
class Control:
    """The Control of a start or stop command: which symbol instance, with what configuration."""

    symbol: str
    plugin_type: str
    rule_id: str
    op_id: str
    instance_id: Any
    datasource: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Key of a running instance, the same on both sides; functions have one per symbol."""
        if self.plugin_type == TYPE_FUNC:
            return function_key(self.symbol)
        return instance_key(self.rule_id, self.op_id, self.instance_id, self.symbol)

    def describe(self) -> str:
        if self.plugin_type == TYPE_FUNC:
            return f"function {self.symbol}"
        kind = "source" if self.plugin_type == TYPE_SOURCE else "sink"
        return f"{kind} {self.symbol} of rule {self.rule_id} op {self.op_id} instance {self.instance_id}"

    def log_context(self) -> dict[str, Any]:
        if self.plugin_type == TYPE_FUNC:
            return {"symbol": self.symbol}
        return {"symbol": self.symbol, "rule": self.rule_id, "op": self.op_id, "instance": self.instance_id}

    def to_dict(self) -> dict[str, Any]:
        """The Control object as the host sends it, keys in eKuiper's order.

        Only a source carries its data source, under both spellings, so that
        either SDK finds it.
        """
        raw: dict[str, Any] = {
            "symbolName": self.symbol,
            "meta": {"ruleId": self.rule_id, "opId": self.op_id, "instanceId": self.instance_id},
            "pluginType": self.plugin_type,
        }
        if self.plugin_type == TYPE_SOURCE:
            raw["dataSource"] = self.datasource
            raw["datasource"] = self.datasource
        raw["config"] = self.config
        return raw

    def to_json(self) -> str:
        """The JSON text of ``to_dict`` (what goes, as a string, into a command's ``arg``)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> Control:
        """Parse and validate a Control; CommandError says what is wrong."""
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise CommandError(f"control is not JSON: {err}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> Control:
        """Validate a decoded Control; accepts both ``datasource`` (Python SDK) and ``dataSource`` (Go SDK)."""
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
        return cls(
            symbol=symbol,
            plugin_type=plugin_type,
            rule_id=rule_id,
            op_id=op_id,
            instance_id=instance_id,
            datasource="" if datasource is None else str(datasource),
            config=config,
        )


def encode_command(cmd: str, control: Mapping[str, Any]) -> bytes:
    """A command as the host sends it: ``arg`` is the Control (``Control.to_dict``) as a JSON *string*."""
    return json.dumps({"cmd": cmd, "arg": json.dumps(control)}).encode()


def decode_command(payload: bytes) -> tuple[str, Control]:
    """``{"cmd": ..., "arg": "<Control JSON>"}`` -> (cmd, Control), as the plugin reads it."""
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
    return command["cmd"], Control.from_dict(raw)


def _safe(name: str) -> bool:
    """Non-empty and unable to leave the IPC directory."""
    return bool(name) and "/" not in name and "\0" not in name
