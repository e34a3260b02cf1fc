"""A windowed rule driven by hand on an explicit clock, for the window and checkpoint tests."""

from __future__ import annotations

from loader.rules.functions import BUILTINS
from loader.rules.sql import compile_query, parse_select
from loader.rules.windowed import EventTime, WindowedRule


def windowed(
    sql: str,
    event_time: EventTime | None = None,
    functions: dict | None = None,
    aggregates: frozenset[str] = frozenset(),
) -> WindowedRule:
    table = {**BUILTINS, **(functions or {})}
    errors: list[Exception] = []
    rule = WindowedRule(
        compile_query(parse_select(sql), lambda name, index: table.get(name), aggregates=aggregates),
        event_time,
        errors.append,
    )
    rule.errors = errors  # type: ignore[attr-defined]
    return rule


def feed(rule: WindowedRule, rows: list[dict], now: int = 0) -> list:
    return rule.on_rows(rows, now)
