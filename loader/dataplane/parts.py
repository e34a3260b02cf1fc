"""Parts of a rule that notice by themselves they are stuck: a function call site, a sink.

A function call that times out (``limits.function_timeout_s``) or a sink
without any ack for ``limits.sink_stall_s`` is seen on the rule's data-plane
thread, where it happens.  The part records the fact (when it failed, when
it last worked, why) and hands the cause to the plugin's supervisor, which
restarts the plugin as unhealthy: a hung plugin does not heal by waiting.
Whether the rule is degraded is not decided here: ``RuleReconciler.causes``
reads these facts with the others and loader/rules/health.py judges them,
so ``rule.degraded`` / ``rule.recovered`` come from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loader.dataplane.metrics import now_ms


@dataclass(frozen=True)
class StuckFacts:
    """A function call site or a sink of the rule that reported itself stuck (this module)."""

    kind: str  # "function" | "sink"
    symbol: str
    plugin: str
    last_ok_ms: int  # it answered after a failure; 0: never
    last_failed_ms: int  # a call timed out, or no ack for limits.sink_stall_s; 0: never
    error: str


class RuleParts:
    """The self-reporting parts of one rule."""

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        self.parts: list[Part] = []

    def part(self, kind: str, symbol: str, plugin: str, on_failure: Callable[[str], None] | None = None) -> Part:
        """A reporter for one part (``kind`` "function" or "sink")."""
        part = Part(kind, symbol, plugin, on_failure)
        self.parts.append(part)
        return part

    def facts(self) -> list[StuckFacts]:
        """What each part last reported, for loader/rules/health.py."""
        return [part.facts() for part in self.parts]


class Part:
    """One part of a rule: ``failed(error)`` and ``working()``, called from the rule's thread."""

    __slots__ = ("kind", "symbol", "plugin", "on_failure", "failed_ms", "worked_ms", "error")

    def __init__(self, kind: str, symbol: str, plugin: str, on_failure: Callable[[str], None] | None) -> None:
        self.kind = kind
        self.symbol = symbol
        self.plugin = plugin
        self.on_failure = on_failure
        self.failed_ms = 0  # 0: never
        self.worked_ms = 0
        self.error = ""

    def failed(self, error: str) -> None:
        """Record the failure and tell ``on_failure`` (the supervisor) every time."""
        self.error = error
        self.failed_ms = now_ms()
        if self.on_failure is not None:
            self.on_failure(error)

    def working(self) -> None:
        """It answered: a failure recorded before is over."""
        if self.failed_ms >= self.worked_ms and self.failed_ms:  # the common case costs two attribute reads
            self.worked_ms = max(now_ms(), self.failed_ms + 1)

    def facts(self) -> StuckFacts:
        return StuckFacts(self.kind, self.symbol, self.plugin, self.worked_ms, self.failed_ms, self.error)
