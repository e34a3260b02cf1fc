"""Is a running rule really working?  Its causes of degradation, from plain facts.

A rule whose pipeline is up can still move nothing: a plugin it uses is
restarting or crash-looping, its source's ``open`` raised (the sdk reports
that as an error on the data channel), its sink's ``open`` raised (the sdk
then error-acks every record with "sink open failed: ..."), or its sink
error-acks records for another reason; or a part of the rule found itself
stuck: a function call timed out (``limits.function_timeout_s``), a
``requireAck`` sink got no ack for ``limits.sink_stall_s`` (they report it
through loader/dataplane/parts.py).  ``causes`` turns facts gathered from
the plugins and the rule's nodes into the list of what is wrong, each naming
the symbol, the plugin and the cause; an empty list means the rule is
``running``, anything else ``degraded``.  It is a pure function of the facts
and the time, so the same answer feeds REST, ``/metrics``, the CLI and the
``rule.degraded`` / ``rule.recovered`` events.

An error counts while it is the node's latest outcome in the current plugin
process, or for ``hold_ms`` after it happened: a sink failing every other
record stays degraded instead of flapping, and an error from a process that
has since been replaced (the fix) clears once the hold has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loader.dataplane.parts import StuckFacts
from loader.plugins.status import PluginState

#: Plugin states in which a rule's symbols can work: a process that handshook
#: serves, whether still on probation or the last good version after a rollback.
WORKING_PLUGIN_STATES = frozenset({PluginState.RUNNING, PluginState.PROBATION, PluginState.ROLLED_BACK})
SINK_OPEN_FAILED = "sink open failed"


@dataclass(frozen=True)
class PluginFacts:
    name: str
    state: str
    error: str | None
    symbols: tuple[str, ...]  # the rule's symbols this plugin provides


@dataclass(frozen=True)
class NodeFacts:
    """A source instance or a portable sink of the rule."""

    kind: str  # "source" | "sink"
    symbol: str
    plugin: str
    last_ok_ms: int  # a record received (source) or acknowledged (sink); 0: never
    last_error_ms: int  # 0: never
    error: str
    error_generation: int  # the plugin process that reported it
    generation: int  # the plugin process now


#: The cause of a stuck part, by its kind.
STUCK_CAUSES = {"function": "function timeout", "sink": "sink stalled"}


@dataclass(frozen=True)
class Cause:
    symbol: str
    plugin: str
    cause: str  # "plugin crashloop", "source error", "sink open failed", "records error-acked", ...
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What stays the same while the cause lasts (a plugin cycling restarting/loading/crashloop is one cause)."""
        return self.symbol, self.plugin, "plugin" if self.cause.startswith("plugin ") else self.cause

    def as_dict(self) -> dict[str, str]:
        return {"symbol": self.symbol, "plugin": self.plugin, "cause": self.cause, "message": self.message}


def causes(
    plugins: list[PluginFacts], nodes: list[NodeFacts], now_ms: int, hold_ms: int, stuck: Sequence[StuckFacts] = ()
) -> list[Cause]:
    """Everything that keeps the rule from working now; empty when it works."""
    found = [cause for plugin in plugins if (cause := _plugin_cause(plugin)) is not None]
    found += [cause for node in nodes if (cause := _node_cause(node, now_ms, hold_ms)) is not None]
    found += [cause for part in stuck if (cause := _stuck_cause(part, now_ms, hold_ms)) is not None]
    return found


def _plugin_cause(plugin: PluginFacts) -> Cause | None:
    if plugin.state in WORKING_PLUGIN_STATES:
        return None
    symbol = ",".join(plugin.symbols)
    why = f": {plugin.error}" if plugin.error else ""
    return Cause(
        symbol, plugin.name, f"plugin {plugin.state}", f"{symbol}: plugin {plugin.name} is {plugin.state}{why}"
    )


def _node_cause(node: NodeFacts, now_ms: int, hold_ms: int) -> Cause | None:
    if not node.last_error_ms:
        return None
    latest = node.error_generation == node.generation and node.last_error_ms >= node.last_ok_ms
    if not latest and now_ms - node.last_error_ms >= hold_ms:
        return None
    if node.kind == "source":
        cause = "source error"
    elif node.error.startswith(SINK_OPEN_FAILED):
        cause = SINK_OPEN_FAILED
    else:
        cause = "records error-acked"
    return Cause(node.symbol, node.plugin, cause, f"{node.kind} {node.symbol} of plugin {node.plugin}: {node.error}")


def _stuck_cause(part: StuckFacts, now_ms: int, hold_ms: int) -> Cause | None:
    """Stuck until it answers again, and for ``hold_ms`` after its last failure (a restart alone is no proof)."""
    if not part.last_failed_ms:
        return None
    if part.last_ok_ms > part.last_failed_ms and now_ms - part.last_failed_ms >= hold_ms:
        return None
    return Cause(
        part.symbol,
        part.plugin,
        STUCK_CAUSES[part.kind],
        f"{part.kind} {part.symbol} of plugin {part.plugin}: {part.error}",
    )


def changes(before: dict[tuple[str, str, str], Cause], now: list[Cause]) -> tuple[list[Cause], list[Cause]]:
    """Causes that appeared and causes that cleared since ``before`` (keyed by ``Cause.key``)."""
    current = {cause.key: cause for cause in now}
    appeared = [cause for key, cause in current.items() if key not in before]
    cleared = [cause for key, cause in before.items() if key not in current]
    return appeared, cleared
