"""A windowed rule's state between records: rows into its window, closed windows out as emissions.

Driven by an explicit clock: ``on_rows(rows, now)`` and ``on_time(now)`` take
the time in ms from the caller (the rule worker's wall clock), so tests use
plain numbers.  Under processing time a row's time is ``now`` when the worker
takes it and ``deadline()`` says when the next window closes; under event time
(rule option ``isEventTime`` and the stream's ``TIMESTAMP`` field) a row's
time is that field, the watermark (largest time seen minus ``lateTolerance``)
closes windows, and rows older than the watermark are dropped and counted as
late.

Where WHERE runs, as in eKuiper: before the window for processing-time
tumbling, hopping and session windows (a filtered row never reaches them);
for count and sliding windows, and under event time, a filtered row still
counts for the window's timing but is not among its rows.  ``FILTER (WHERE
...)`` always runs before the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loader.rules.aggregates import Row
from loader.rules.sql import CompiledQuery
from loader.rules.windows import Fired, Watermark, make_window

Emission = list[dict[str, Any]]


@dataclass(frozen=True)
class EventTime:
    field: str
    late_tolerance: int = 0


class WindowedRule:
    def __init__(
        self, query: CompiledQuery, event_time: EventTime | None = None, fail: Callable[[Exception], None] | None = None
    ) -> None:
        if query.window is None or query.grouped is None:
            raise ValueError("a windowed rule needs a query with a window")
        self.query = query
        self.grouped = query.grouped
        self.spec = query.window.spec
        self.window = make_window(self.spec)
        self.event_time = event_time
        self.watermark = Watermark(event_time.late_tolerance) if event_time is not None else None
        self.fail: Callable[[Exception], None] = fail or (lambda exc: None)
        self.pushdown = event_time is None and self.spec.kind in ("tumbling", "hopping", "session")

    @property
    def late(self) -> int:
        return self.watermark.late if self.watermark is not None else 0

    def deadline(self) -> int | None:
        """When (ms) a window closes with no further row; None under event time or when nothing is open."""
        return None if self.watermark is not None else self.window.deadline()

    def start(self, now: int) -> None:
        """Under processing time, time windows run from the rule's start (as eKuiper's first tick)."""
        if self.watermark is None:
            self.window.start(now)

    def on_time(self, now: int) -> list[Emission]:
        if self.watermark is not None:
            return []
        self.window.start(now)
        return self._emissions(self.window.advance(now))

    def on_rows(self, rows: list[Row], now: int) -> list[Emission]:
        fired: list[Fired] = []
        if self.watermark is None:
            self.window.start(now)
            fired += self.window.advance(now)
            for row in rows:
                fired += self._add(now, row)
        else:
            for row in rows:  # one at a time: each row moves the watermark before the next is judged late
                ts = self._event_time(row)
                if ts is None or not self.watermark.offer(ts, row):
                    continue
                for held_ts, held in self.watermark.release():
                    fired += self._add(held_ts, held)
                if self.watermark.value is not None:
                    fired += self.window.advance(self.watermark.value)
        return self._emissions(fired)

    def _event_time(self, row: Row) -> int | None:
        assert self.event_time is not None
        value = row.get(self.event_time.field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(
                ValueError(
                    f"the record's event time field {self.event_time.field!r} is {value!r}, "
                    "not a number of milliseconds since the epoch"
                )
            )
            return None
        return int(value)

    def _add(self, ts: int, row: Row) -> list[Fired]:
        query = self.query
        try:
            if query.filter is not None and query.filter(row) is not True:
                return []
            kept = query.where is None or query.where(row) is True
            if not kept and self.pushdown:
                return []
            triggers = query.trigger is None or query.trigger(row) is True
        except Exception as exc:  # one bad record must not stop the rule
            self.fail(exc)
            return []
        return self.window.add(ts, row, kept, triggers)

    def _emissions(self, fired: list[Fired]) -> list[Emission]:
        emissions: list[Emission] = []
        for window in fired:
            rows = self.grouped.emit(window.rows, window.start, window.end, self.fail)
            if rows:
                emissions.append(rows)
        return emissions
