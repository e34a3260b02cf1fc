"""Aggregate functions and grouping: what a rule makes of a window's rows.

eKuiper's model, kept here: a window's rows are grouped by the GROUP BY
fields (one group for the whole window without them); HAVING keeps groups;
ORDER BY sorts them; SELECT makes one row per group.  In a group, a column
outside an aggregate takes the value of the group's *first* row (eKuiper's
collections answer field lookups from their first row), and an aggregate
call receives, per argument, the column of values of every row of the group
(``count(*)`` and ``collect(*)``: the rows themselves).  A portable function
whose ``IsAggregate`` answers true is called the same way: each argument an
array.  A SELECT without aggregates over a window with no GROUP BY fields
gives every row of the window (HAVING then tests the window as a whole).

Without a window, an aggregate sees one row, as in eKuiper (``count(*)`` is
1, ``avg(x)`` is ``x``).

Group-level expressions are compiled by the rule compiler (sql/compile.py) like row
expressions: they are evaluated on a ``GroupRow``, a dict holding the first
row's fields (so plain column lookups work unchanged) plus the group's rows
and window range, which aggregate calls and ``window_start()`` read.

Integers stay integers, as in eKuiper's aggregate functions: ``sum`` of
integers is an integer, and so is ``avg`` of integers (the sum divided by
the count, truncated: ``avg`` of 1 and 2 is 1); with a float among the
values the result is a float.  ``stddev``, ``var`` and the percentiles work
on floats and give floats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A record: a JSON object, field name -> value.
Row = dict[str, Any]
#: A compiled expression, evaluated on a row (or on a group, which is a row too).
Evaluator = Callable[[Row], Any]
#: An aggregate function: one column (the argument's values over the group's rows) per argument.
Aggregate = Callable[[list[list[Any]]], Any]


class GroupRow(dict[str, Any]):
    """A group as the compiled expressions see it: the first row's fields and source metadata (what
    ``meta(key)`` reads), the rows, the window range."""

    __slots__ = ("rows", "start", "end", "meta")

    def __init__(self, rows: list[Row], start: int = 0, end: int = 0) -> None:
        super().__init__(rows[0] if rows else {})
        self.rows = rows
        self.start = start
        self.end = end
        self.meta = getattr(rows[0], "meta", None) if rows else None


class AggregateError(ValueError):
    """An aggregate met values it cannot combine; the record group fails, the rule runs on."""


def _numbers(name: str, column: list[Any]) -> list[int | float]:
    values = [v for v in column if v is not None]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise AggregateError(f"{name}: {v!r} is not a number")
    return values


def _one(name: str, args: list[list[Any]]) -> list[Any]:
    if len(args) != 1:
        raise AggregateError(f"{name} takes 1 argument, got {len(args)}")
    return args[0]


def agg_count(args: list[list[Any]]) -> Any:
    return sum(1 for v in _one("count", args) if v is not None)


def agg_sum(args: list[list[Any]]) -> Any:
    values = _numbers("sum", _one("sum", args))
    if not values:
        return None
    return math.fsum(values) if any(isinstance(v, float) for v in values) else sum(values)


def agg_avg(args: list[list[Any]]) -> Any:
    values = _numbers("avg", _one("avg", args))
    if not values:
        return None
    if any(isinstance(v, float) for v in values):
        return math.fsum(values) / len(values)
    total = sum(values)
    return abs(total) // len(values) * (1 if total >= 0 else -1)  # truncated toward zero, as Go's integer division


def _extreme(name: str, args: list[list[Any]], pick: Callable[[list[Any]], Any]) -> Any:
    values = [v for v in _one(name, args) if v is not None]
    if not values:
        return None
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numeric and not all(isinstance(v, str) for v in values):
        raise AggregateError(f"{name}: the values must be all numbers or all strings")
    return pick(values)


def agg_min(args: list[list[Any]]) -> Any:
    return _extreme("min", args, min)


def agg_max(args: list[list[Any]]) -> Any:
    return _extreme("max", args, max)


def agg_collect(args: list[list[Any]]) -> Any:
    return list(_one("collect", args))


def agg_merge_agg(args: list[list[Any]]) -> Any:
    merged: dict[str, Any] = {}
    for value in _one("merge_agg", args):
        if isinstance(value, dict):
            merged.update(value)
    return merged


def agg_last_value(args: list[list[Any]]) -> Any:
    if len(args) != 2:
        raise AggregateError(f"last_value takes 2 arguments (column, ignore nulls), got {len(args)}")
    column, ignore_null = args[0], args[1][-1] if args[1] else False
    if ignore_null:
        return next((v for v in reversed(column) if v is not None), None)
    return column[-1] if column else None


def agg_deduplicate(args: list[list[Any]]) -> Any:
    """``args`` is (rows, key column, all flags): the rows whose key was not seen before."""
    rows, keys, every = args[0], args[1], args[2][-1] if args[2] else False
    seen: set[str] = set()
    kept: list[Any] = []
    for index, key in enumerate(keys):
        text = json.dumps(key, sort_keys=True, default=str)
        if text in seen:
            continue
        seen.add(text)
        if every or index == len(keys) - 1:
            kept.append(rows[index])
    if every:
        return kept
    return kept[0] if kept else None


def _variance(name: str, args: list[list[Any]], sample: bool) -> float | None:
    values = _numbers(name, _one(name, args))
    if len(values) < (2 if sample else 1):
        return None
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values) / (len(values) - (1 if sample else 0))


def agg_var(args: list[list[Any]]) -> Any:
    return _variance("var", args, False)


def agg_vars(args: list[list[Any]]) -> Any:
    return _variance("vars", args, True)


def agg_stddev(args: list[list[Any]]) -> Any:
    v = _variance("stddev", args, False)
    return None if v is None else math.sqrt(v)


def agg_stddevs(args: list[list[Any]]) -> Any:
    v = _variance("stddevs", args, True)
    return None if v is None else math.sqrt(v)


def _percentile_args(name: str, args: list[list[Any]]) -> tuple[list[int | float], float]:
    if len(args) != 2:
        raise AggregateError(f"{name} takes 2 arguments (column, fraction between 0 and 1), got {len(args)}")
    fraction = args[1][-1] if args[1] else None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise AggregateError(f"{name}: the fraction must be a number between 0 and 1, got {fraction!r}")
    return sorted(_numbers(name, args[0])), float(fraction)


def agg_percentile_cont(args: list[list[Any]]) -> Any:
    """Linear interpolation between the closest ranks (rank = fraction * (n - 1))."""
    values, fraction = _percentile_args("percentile_cont", args)
    if not values:
        return None
    rank = fraction * (len(values) - 1)
    low = int(rank)
    if low + 1 >= len(values):
        return float(values[low])
    return float(values[low] + (rank - low) * (values[low + 1] - values[low]))


def agg_percentile_disc(args: list[list[Any]]) -> Any:
    """Nearest rank: the smallest value whose rank covers the fraction."""
    values, fraction = _percentile_args("percentile_disc", args)
    if not values:
        return None
    rank = math.ceil(len(values) * fraction)
    return float(values[max(rank, 1) - 1])


#: eKuiper's built-in aggregate functions, by name; each takes one column (list) per argument.
BUILTIN_AGGREGATES: dict[str, Aggregate] = {
    "count": agg_count,
    "sum": agg_sum,
    "avg": agg_avg,
    "min": agg_min,
    "max": agg_max,
    "collect": agg_collect,
    "merge_agg": agg_merge_agg,
    "last_value": agg_last_value,
    "deduplicate": agg_deduplicate,
    "var": agg_var,
    "vars": agg_vars,
    "stddev": agg_stddev,
    "stddevs": agg_stddevs,
    "percentile_cont": agg_percentile_cont,
    "percentile": agg_percentile_cont,
    "percentile_disc": agg_percentile_disc,
}
#: Functions of the window, not of a row: evaluated on the group.
WINDOW_RANGE_FUNCTIONS = ("window_start", "window_end")
#: Aggregates whose ``*`` means the whole rows.
STAR_AGGREGATES = ("count", "collect", "merge_agg")
#: Argument counts of the built-in aggregates, and the kind of literal their second argument must be.
ARITY = {name: 1 for name in BUILTIN_AGGREGATES} | {
    "deduplicate": 2,
    "last_value": 2,
    "percentile_cont": 2,
    "percentile": 2,
    "percentile_disc": 2,
}
SECOND_ARGUMENT = {
    "deduplicate": "a boolean literal (true or false)",
    "last_value": "a boolean literal (true or false)",
    "percentile_cont": "a number literal between 0 and 1",
    "percentile": "a number literal between 0 and 1",
    "percentile_disc": "a number literal between 0 and 1",
}


def aggregate_call(name: str, function: Aggregate, arguments: list[Evaluator | None]) -> Evaluator:
    """A group-level evaluator calling ``function`` with one column per argument (None: ``*``, the rows)."""
    with_rows = name == "deduplicate"

    def evaluate(group: Row) -> Any:
        rows = group.rows if isinstance(group, GroupRow) else [group]
        columns = [rows if arg is None else [arg(row) for row in rows] for arg in arguments]
        if with_rows:
            columns.insert(0, rows)
        return function(columns)

    return evaluate


def window_range_call(name: str) -> Evaluator:
    """``window_start()`` / ``window_end()``: the window's bounds in ms (0 outside a window, as in eKuiper)."""
    attribute = "start" if name == "window_start" else "end"
    return lambda group: getattr(group, attribute, 0)


def group_key(values: list[Any]) -> tuple[tuple[Any, Any], ...]:
    """A hashable key for GROUP BY values (objects and arrays group by their JSON text)."""
    key: list[tuple[Any, Any]] = []
    for value in values:
        if isinstance(value, (dict, list)):
            key.append(("json", json.dumps(value, sort_keys=True, default=str)))
        else:
            key.append((isinstance(value, bool), value))
    return tuple(key)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Orders values of mixed types without failing: nulls, then booleans, numbers, strings, the rest."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, json.dumps(value, sort_keys=True, default=str))


@dataclass
class GroupedQuery:
    """The part of a windowed rule that turns one window's rows into one emission's rows."""

    star: bool
    #: (output name, group-level evaluator), in SELECT order.
    columns: list[tuple[str, Evaluator]]
    #: GROUP BY fields other than the window: row-level evaluators.
    keys: list[Evaluator] = field(default_factory=list)
    having: Evaluator | None = None
    #: ORDER BY: (group-level evaluator, descending).
    order: list[tuple[Evaluator, bool]] = field(default_factory=list)
    #: True when SELECT calls an aggregate: one row per group rather than one per row.
    aggregate: bool = False

    def emit(self, rows: list[Row], start: int, end: int, fail: Callable[[Exception], None]) -> list[Row]:
        """The result rows of one window; a group that fails is reported through ``fail`` and left out."""
        units = self._units(rows, start, end, fail)
        for evaluate, descending in reversed(self.order):
            keys = {}
            for index, unit in enumerate(units):
                try:
                    keys[index] = _sort_key(evaluate(unit))
                except Exception as exc:
                    fail(exc)
                    keys[index] = (0, 0)
            order = sorted(range(len(units)), key=keys.__getitem__, reverse=descending)
            units = [units[i] for i in order]
        out: list[Row] = []
        for unit in units:
            try:
                out.append(self._project(unit))
            except Exception as exc:
                fail(exc)
        return out

    def _units(self, rows: list[Row], start: int, end: int, fail: Callable[[Exception], None]) -> list[GroupRow]:
        if self.keys:
            groups: dict[Any, list[Row]] = {}
            for row in rows:
                try:
                    key = group_key([evaluate(row) for evaluate in self.keys])
                except Exception as exc:
                    fail(exc)
                    continue
                groups.setdefault(key, []).append(row)
            units = [GroupRow(members, start, end) for members in groups.values()]
        else:
            units = [GroupRow(rows, start, end)]
        if self.having is not None:
            units = [unit for unit in units if self._passes(unit, fail)]
        if self.keys or self.aggregate:
            return units
        return [GroupRow([row], start, end) for unit in units for row in unit.rows]

    def _passes(self, unit: GroupRow, fail: Callable[[Exception], None]) -> bool:
        try:
            return self.having is not None and self.having(unit) is True
        except Exception as exc:
            fail(exc)
            return False

    def _project(self, unit: GroupRow) -> Row:
        """The output row; a column whose value is null is left out, as eKuiper's projection does."""
        out: Row = dict(unit) if self.star else {}
        for name, evaluate in self.columns:
            value = evaluate(unit)
            if value is not None:
                out[name] = value
            else:
                out.pop(name, None)
        return out
