"""Figure 11: what the rule worker spends per record on the SQL of the corpus.

Every case of the SQL corpus (tests/rules/sql/cases/*.yaml) that compiles with
the built-in functions alone is compiled as the loader compiles a rule:
``parse_select``, ``compile_query``, and for a windowed rule its
``WindowedRule``, on event time when the case's rule says ``isEventTime``.
Its input rows are then fed in this process, as the worker feeds them, over
fresh rule instances until at least ``RECORDS`` records went through.
Compiling is not timed. Nothing else is timed either: no sockets, no
decoding, no sinks. It is the cost of the query, per record.

The row prints the median over the cases, with the 90th percentile and the
slowest case in the note; the JSON keeps every case's figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.harness import Run
from bench.report import Row, info_row, median, percentile
from loader.rules.functions import BUILTINS
from loader.rules.sql import SqlError, compile_query, parse_select
from loader.rules.windowed import EventTime, WindowedRule

RECORDS = 20_000
QUICK_RECORDS = 2_000


def _feeder(case: Any) -> Callable[[], Callable[[list[dict[str, Any]]], object]] | None:
    """A factory of fresh rule instances of ``case``, each a function taking a batch of rows; None when
    the case needs what this process cannot give (a portable function, a refusal)."""
    if case.error is not None or not case.input:
        return None
    try:
        plan = parse_select(case.rule_sql)
        if any(name not in BUILTINS for name, _ in plan.functions):
            return None
        query = compile_query(plan, lambda name, index: BUILTINS.get(name), case.rule_id)
    except SqlError:
        return None
    if query.window is None:
        apply = query.apply

        def per_row(rows: list[dict[str, Any]]) -> object:
            results = []
            for row in rows:
                try:  # as the worker: a record that fails is counted and dropped, the rest go on
                    results.append(apply(row))
                except Exception as exc:
                    results.append(exc)
            return results

        return lambda: per_row
    field = case.stream_options.get("TIMESTAMP")
    event_time = (
        EventTime(field, int(case.options.get("lateTolerance") or 0))
        if case.options.get("isEventTime") and field
        else None
    )

    def fresh() -> Callable[[list[dict[str, Any]]], object]:
        rule = WindowedRule(query, event_time)
        return lambda rows: rule.on_rows(rows, 0)

    return fresh


def _cost_us(case: Any, fresh: Callable[[], Callable[[list[dict[str, Any]]], object]], records: int) -> float:
    rounds = max(1, records // len(case.input))
    instances = [fresh() for _ in range(rounds)]
    rows = [dict(row) for row in case.input]
    started = time.perf_counter()
    for feed in instances:
        feed([dict(row) for row in rows])
    return (time.perf_counter() - started) * 1e6 / (rounds * len(rows))


def measure(run: Run) -> list[Row]:
    from tests.rules.sql.corpus import load_cases

    records = QUICK_RECORDS if run.quick else RECORDS
    costs: dict[str, float] = {}
    for case in load_cases():
        fresh = _feeder(case)
        if fresh is not None:
            costs[f"{case.file}: {case.name}"] = _cost_us(case, fresh, records)
    values = sorted(costs.values())
    slowest = max(costs, key=costs.__getitem__)
    note = (
        f"{len(costs)} corpus cases; p90 {percentile(values, 90):.1f} us; slowest {slowest} "
        f"{costs[slowest]:.1f} us (includes copying each input row)"
    )
    row = info_row(
        "sqlcost.median",
        "11",
        "rule worker: the corpus's SQL per record (median case)",
        median(values),
        "us",
        note,
        values,
    )
    return [row]
