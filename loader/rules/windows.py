"""eKuiper's five windows as pure state machines driven by an explicit clock (milliseconds).

A window is told about rows (``add(ts, row, kept, triggers)``) and about time
(``advance(now)``: the processing clock, or the watermark under event time),
and answers the windows that closed: ``Fired(start, end, rows)``.  It never
reads a clock itself, so tests drive it with plain numbers, and
``deadline()`` tells the rule's worker when to wake even if no row arrives.

``kept`` is the row's WHERE result: a row that fails it still counts (a count
window of 3 closes every 3 rows, as eKuiper's does) but is not part of the
window's rows.  ``triggers`` is a sliding window's ``OVER (WHEN ...)``.

Time windows align to the epoch (a 10 s window ends at every multiple of
10 s).  A window fires even with no rows (eKuiper then emits one row for an
aggregate query without GROUP BY fields: ``count(*)`` is 0); when time jumps
over several windows at once, the empty ones but the last are skipped rather
than fired one by one.  The timing, as eKuiper has it:

- tumbling(size): rows in ``[end - size, end)``, at each multiple of size;
- hopping(size, hop): rows in ``[end - size, end)``, at each multiple of hop;
- sliding(size[, delay]): on each triggering row at ``t``, rows in
  ``[t - size, t]``; with a delay, at ``t + delay``, rows in ``[t - size, t + delay)``;
- session(max duration, timeout): from a first row until no row came for
  ``timeout``, or until the first multiple of the max duration that is at
  least that long after the session's start;
- count(n[, hop]): every ``hop`` rows, the last ``n`` rows once there are ``n``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Protocol

UNITS_MS = {"dd": 86_400_000, "hh": 3_600_000, "mi": 60_000, "ss": 1000, "ms": 1}

Entry = tuple[int, Any, bool]  # (timestamp ms, row, kept)


@dataclass(frozen=True)
class WindowSpec:
    """``length``/``interval`` in ms for time windows (size and hop; max duration and timeout for
    sessions), in rows for count windows (count and hop)."""

    kind: str
    length: int
    interval: int
    delay: int = 0
    unit: str = ""

    @property
    def timed(self) -> bool:
        return self.kind != "count"


@dataclass
class Fired:
    start: int
    end: int
    rows: list[Any] = field(default_factory=list)


class Window(Protocol):
    def add(self, ts: int, row: Any, kept: bool = True, triggers: bool = True) -> list[Fired]: ...

    def start(self, now: int) -> None: ...

    def advance(self, now: int) -> list[Fired]: ...

    def deadline(self) -> int | None: ...


def _kept(entries: list[Entry], low: int, high: int, include_high: bool = False) -> list[Any]:
    return [row for ts, row, kept in entries if kept and low <= ts and (ts < high or (include_high and ts == high))]


def _drop_before(entries: list[Entry], ts: int) -> None:
    """Drop the leading entries older than ``ts`` (entries come in time order): O(dropped), not O(held)."""
    count = 0
    while count < len(entries) and entries[count][0] < ts:
        count += 1
    if count:
        del entries[:count]


class HoppingWindow:
    """Tumbling is hopping with ``hop == size``."""

    def __init__(self, size: int, hop: int) -> None:
        self.size, self.hop = size, hop
        self.entries: list[Entry] = []
        self.next_end: int | None = None

    def add(self, ts: int, row: Any, kept: bool = True, triggers: bool = True) -> list[Fired]:
        fired = self.advance(ts)
        self.start(ts)
        self.entries.append((ts, row, kept))
        return fired

    def start(self, now: int) -> None:
        """Windows run from the first aligned end after ``now`` (the rule's start, or the first event)."""
        if self.next_end is None:
            self.next_end = (now // self.hop + 1) * self.hop

    def advance(self, now: int) -> list[Fired]:
        fired: list[Fired] = []
        while self.next_end is not None and self.next_end <= now:
            end = self.next_end
            rows = _kept(self.entries, end - self.size, end)
            if rows or end + self.hop > now:  # an empty window fires only as the latest one due
                fired.append(Fired(end - self.size, end, rows))
            _drop_before(self.entries, end + self.hop - self.size)
            self.next_end = end + self.hop
            if not self.entries:  # nothing to collect on the way: jump to the latest window due
                self.next_end = max(self.next_end, now // self.hop * self.hop)
        return fired

    def deadline(self) -> int | None:
        return self.next_end


class SlidingWindow:
    def __init__(self, size: int, delay: int = 0) -> None:
        self.size, self.delay = size, delay
        self.entries: list[Entry] = []
        self.pending: list[int] = []  # window ends waiting for their delay, in order

    def add(self, ts: int, row: Any, kept: bool = True, triggers: bool = True) -> list[Fired]:
        fired = self.advance(ts)
        self.entries.append((ts, row, kept))
        if triggers:
            if self.delay:
                self.pending.append(ts + self.delay)
            else:
                fired.append(Fired(ts - self.size, ts, _kept(self.entries, ts - self.size, ts, include_high=True)))
        oldest = min([ts, *(end - self.delay for end in self.pending)]) - self.size
        _drop_before(self.entries, oldest)
        return fired

    def advance(self, now: int) -> list[Fired]:
        fired: list[Fired] = []
        while self.pending and self.pending[0] <= now:
            end = self.pending.pop(0)
            start = end - self.delay - self.size
            fired.append(Fired(start, end, _kept(self.entries, start, end)))
        return fired

    def start(self, now: int) -> None:
        """Sliding windows start with their first row."""

    def deadline(self) -> int | None:
        return self.pending[0] if self.pending else None


class SessionWindow:
    def __init__(self, max_duration: int, timeout: int) -> None:
        self.max_duration, self.timeout = max_duration, timeout
        self.entries: list[Entry] = []
        self.began = 0

    def add(self, ts: int, row: Any, kept: bool = True, triggers: bool = True) -> list[Fired]:
        fired = self.advance(ts)
        if not self.entries:
            self.began = ts
        self.entries.append((ts, row, kept))
        return fired

    def advance(self, now: int) -> list[Fired]:
        fired: list[Fired] = []
        end = self.deadline()
        if end is not None and end <= now:
            fired.append(Fired(self.began, end, [row for _, row, kept in self.entries if kept]))
            self.entries = []
        return fired

    def start(self, now: int) -> None:
        """Sessions start with their first row."""

    def deadline(self) -> int | None:
        if not self.entries:
            return None
        timeout_end = self.entries[-1][0] + self.timeout
        tick = -(-(self.began + self.max_duration) // self.max_duration) * self.max_duration
        return min(timeout_end, tick)


class CountWindow:
    def __init__(self, count: int, hop: int) -> None:
        self.count, self.hop = count, hop
        self.entries: list[Entry] = []
        self.seen = 0

    def add(self, ts: int, row: Any, kept: bool = True, triggers: bool = True) -> list[Fired]:
        self.entries.append((ts, row, kept))
        self.seen += 1
        if self.seen % self.hop:
            return []
        self.seen = 0
        if len(self.entries) < self.count:
            return []
        window = self.entries[-self.count :]
        self.entries = self.entries[len(self.entries) - self.count + 1 :]
        return [Fired(window[0][0], window[-1][0], [row for _, row, kept in window if kept])]

    def start(self, now: int) -> None:
        """Count windows do not depend on time."""

    def advance(self, now: int) -> list[Fired]:
        return []

    def deadline(self) -> int | None:
        return None


def make_window(spec: WindowSpec) -> Window:
    if spec.kind == "tumbling":
        return HoppingWindow(spec.length, spec.length)
    if spec.kind == "hopping":
        return HoppingWindow(spec.length, spec.interval)
    if spec.kind == "sliding":
        return SlidingWindow(spec.length, spec.delay)
    if spec.kind == "session":
        return SessionWindow(spec.length, spec.interval)
    if spec.kind == "count":
        return CountWindow(spec.length, spec.interval)
    raise ValueError(f"unknown window kind {spec.kind!r}")


class Watermark:
    """Event time: holds rows until the watermark (the largest event time seen minus the late
    tolerance) passes them, then releases them in time order; a row older than the watermark is late."""

    def __init__(self, late_tolerance: int) -> None:
        self.late_tolerance = late_tolerance
        self.value: int | None = None
        self.largest: int | None = None
        self.held: list[tuple[int, int, Any]] = []  # (ts, arrival order, row), kept sorted
        self.order = 0
        self.late = 0

    def offer(self, ts: int, row: Any) -> bool:
        """Hold ``row``; False (and counted) when it is late."""
        if self.value is not None and ts < self.value:
            self.late += 1
            return False
        self.order += 1
        bisect.insort(self.held, (ts, self.order, row), key=lambda h: (h[0], h[1]))
        self.largest = ts if self.largest is None else max(self.largest, ts)
        return True

    def release(self) -> list[tuple[int, Any]]:
        """Move the watermark and return the rows it passed, oldest first."""
        if self.largest is None:
            return []
        mark = self.largest - self.late_tolerance
        if self.value is not None and mark <= self.value:
            return []
        self.value = mark
        count = bisect.bisect_right(self.held, mark, key=lambda h: h[0])
        passed = self.held[:count]
        del self.held[:count]
        return [(ts, row) for ts, _, row in passed]
