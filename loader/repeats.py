"""Rate limits for conditions that repeat on their own.

Some faults are not a change but a condition that the loader meets again and
again: a control socket held by another process, a plugin that keeps
crashing.  Logging each meeting flooded journald with identical lines, so
such an event is logged the first time, then at most once per interval,
carrying how many meetings were held back since the last line (``repeated``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

#: Default interval between two lines about the same repeating condition.
REPEAT_INTERVAL_S = 300.0


@dataclass
class _Seen:
    logged_at: float
    held_back: int = 0


class Repeats:
    def __init__(self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._seen: dict[Hashable, _Seen] = {}

    def check(self, key: Hashable) -> int | None:
        """None: do not log this occurrence; else log it, with this many occurrences held back before it."""
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(now)
            return 0
        if now - seen.logged_at < self.interval_s:
            seen.held_back += 1
            return None
        held_back = seen.held_back
        self._seen[key] = _Seen(now)
        return held_back

    def active(self, key: Hashable) -> bool:
        """Whether the condition was met and has not been cleared since."""
        return key in self._seen

    def clear(self, key: Hashable) -> None:
        """The condition ended: the next occurrence is logged at once."""
        self._seen.pop(key, None)
