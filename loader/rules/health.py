"""Whether a running rule is doing its work, as its parts report it.

A rule can be ``running`` and still do nothing: a function call that never
returns, a sink that never acknowledges.  The part that sees it (a function
call site, a sink; on the rule's data-plane thread) reports a cause; the rule
is degraded while any part has one, the status shows it, and the transition
is one ``rule.degraded`` event (``rule.recovered`` when the part works again).
A part may also hand its cause to the plugin's supervisor, which restarts the
plugin as unhealthy: a hung plugin does not heal by waiting.
"""

from __future__ import annotations

import threading
from typing import Callable

from loader.log import get_logger


class RuleHealth:
    """The causes of one rule's degradation, by part."""

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        self._causes: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def reason(self) -> str | None:
        """Every current cause, in one sentence per part; None when the rule is healthy."""
        causes = dict(self._causes)
        return "; ".join(f"{part}: {cause}" for part, cause in sorted(causes.items())) or None

    def part(self, name: str, on_failure: Callable[[str], None] | None = None) -> "Part":
        """A reporter for one part (``function revert``, ``sink collect``)."""
        return Part(self, name, on_failure)

    def _set(self, part: str, cause: str | None) -> None:
        with self._lock:
            before = self._causes.get(part)
            if cause is None:
                self._causes.pop(part, None)
            else:
                self._causes[part] = cause
        log = get_logger(rule=self.rule_id)
        if cause is not None and before is None:
            log.warning("rule.degraded", part=part, cause=cause)
        elif cause is None and before is not None:
            log.info("rule.recovered", part=part, cause_was=before)


class Part:
    """One part of a rule: ``failed(cause)`` and ``working()``, callable from any thread."""

    __slots__ = ("health", "name", "on_failure", "cause")

    def __init__(self, health: RuleHealth, name: str, on_failure: Callable[[str], None] | None) -> None:
        self.health = health
        self.name = name
        self.on_failure = on_failure
        self.cause: str | None = None

    def failed(self, cause: str) -> None:
        """Degrade the rule (logged once per episode) and tell ``on_failure`` every time."""
        if self.cause is None:
            self.health._set(self.name, cause)
        self.cause = cause
        if self.on_failure is not None:
            self.on_failure(cause)

    def working(self) -> None:
        if self.cause is not None:  # the common case costs one attribute read
            self.cause = None
            self.health._set(self.name, None)
