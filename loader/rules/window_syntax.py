"""eKuiper's window syntax on top of sqlglot: the parser additions and the reading of GROUP BY.

eKuiper writes windows as calls in GROUP BY (``GROUP BY a, TUMBLINGWINDOW(ss, 10)``),
optionally followed by ``FILTER (WHERE cond)`` (rows the window never sees) and,
for a sliding window, ``OVER (WHEN cond)`` (only rows meeting ``cond`` trigger
it).  sqlglot parses ``FILTER`` already; ``OVER (WHEN ...)`` is not SQL it
knows, so ``WindowSyntaxParser`` reads it into a ``WindowTrigger`` node.

The parser also keeps eKuiper's aggregate names as plain calls: sqlglot maps
``last_value``, ``median``, ``percentile_cont``... to its own typed nodes with
other arities (``last_value(x, true)`` is a parse error there).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp, parser
from sqlglot.tokens import TokenType

from loader.rules.windows import UNITS_MS, WindowSpec

#: eKuiper's aggregate functions (docs/en_US/sqls/functions/aggregate_functions.md), parsed as plain calls.
AGGREGATE_NAMES = frozenset(
    {
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "collect",
        "deduplicate",
        "last_value",
        "merge_agg",
        "stddev",
        "stddevs",
        "var",
        "vars",
        "median",
        "percentile",
        "percentile_cont",
        "percentile_disc",
    }
)
WINDOW_FUNCTIONS = ("TUMBLINGWINDOW", "HOPPINGWINDOW", "SLIDINGWINDOW", "SESSIONWINDOW", "COUNTWINDOW")


class WindowSyntaxError(Exception):
    """A window clause eKuiper would refuse, or one not supported; the message names it."""


class WindowTrigger(exp.Expression):
    """``<window call> OVER (WHEN <condition>)``."""

    arg_types = {"this": True, "expression": True}


class WindowSyntaxParser(parser.Parser):
    FUNCTIONS = {
        name: builder
        for name, builder in parser.Parser.FUNCTIONS.items()
        if name.lower() not in AGGREGATE_NAMES and name != "VARIANCE"
    }

    def _parse_window(self, this: exp.Expr | None, alias: bool = False) -> exp.Expr | None:
        if not alias and self._over_when():
            self._advance(3)
            condition = self._parse_assignment()
            self._match_r_paren()
            this = self.expression(WindowTrigger(this=this, expression=condition))
        return super()._parse_window(this, alias)

    def _over_when(self) -> bool:
        tokens, index = self._tokens, self._index
        return (
            index + 2 < len(tokens)
            and tokens[index].token_type == TokenType.OVER
            and tokens[index + 1].token_type == TokenType.L_PAREN
            and tokens[index + 2].text.upper() == "WHEN"
        )


@dataclass
class WindowClause:
    """The window of a rule as written: its spec, the node (for positions) and its conditions."""

    spec: WindowSpec
    node: exp.Expression
    filter: exp.Expression | None = None
    trigger: exp.Expression | None = None


def read_group_by(group: exp.Group, where) -> tuple[WindowClause | None, list[exp.Expression]]:
    """The window and the grouping expressions of a GROUP BY; ``where(node)`` gives ``line L, column C``."""
    window: WindowClause | None = None
    keys: list[exp.Expression] = []
    for item in group.expressions:
        clause = _window_clause(item, where)
        if clause is None:
            keys.append(item)
            continue
        if window is not None:
            raise WindowSyntaxError(f"{where(item)}: a second window in GROUP BY; a rule has at most one window")
        window = clause
    return window, keys


def _window_clause(item: exp.Expression, where) -> WindowClause | None:
    filter_node = trigger = None
    node = item
    if isinstance(node, exp.Filter):
        filter_node = node.expression.this if isinstance(node.expression, exp.Where) else node.expression
        node = node.this
    if isinstance(node, WindowTrigger):
        trigger, node = node.expression, node.this
    name = str(node.this).upper() if isinstance(node, exp.Anonymous) else ""
    if name not in WINDOW_FUNCTIONS:
        if filter_node is not None:
            raise WindowSyntaxError(f"{where(item)}: FILTER (WHERE ...) must follow a window function")
        if trigger is not None:
            raise WindowSyntaxError(f"{where(item)}: OVER (WHEN ...) must follow SLIDINGWINDOW")
        return None
    if trigger is not None and name != "SLIDINGWINDOW":
        raise WindowSyntaxError(f"{where(item)}: OVER (WHEN ...) is only for SLIDINGWINDOW, not {name}")
    return WindowClause(_spec(name, list(node.expressions), node, where), node, filter_node, trigger)


_ARITY = {
    "TUMBLINGWINDOW": (2, 2),
    "HOPPINGWINDOW": (3, 3),
    "SLIDINGWINDOW": (2, 3),
    "SESSIONWINDOW": (3, 3),
    "COUNTWINDOW": (1, 2),
}
_USAGE = {
    "TUMBLINGWINDOW": "TUMBLINGWINDOW(unit, size)",
    "HOPPINGWINDOW": "HOPPINGWINDOW(unit, size, hop)",
    "SLIDINGWINDOW": "SLIDINGWINDOW(unit, size[, delay])",
    "SESSIONWINDOW": "SESSIONWINDOW(unit, max duration, timeout)",
    "COUNTWINDOW": "COUNTWINDOW(count[, hop])",
}

_PARAMETERS = {
    "TUMBLINGWINDOW": ("size",),
    "HOPPINGWINDOW": ("size", "hop"),
    "SLIDINGWINDOW": ("size", "delay"),
    "SESSIONWINDOW": ("max duration", "timeout"),
}


def _spec(name: str, args: list[exp.Expression], node: exp.Expression, where) -> WindowSpec:
    low, high = _ARITY[name]
    if not low <= len(args) <= high:
        raise WindowSyntaxError(
            f"{where(node)}: {name} takes {low}{'' if low == high else f' to {high}'} "
            f"arguments, got {len(args)}: write {_USAGE[name]}"
        )
    if name == "COUNTWINDOW":
        count = _positive(args[0], name, "count", where)
        hop = _positive(args[1], name, "hop", where) if len(args) == 2 else count
        if hop > count:
            raise WindowSyntaxError(
                f"{where(node)}: COUNTWINDOW({count}, {hop}): the hop must not be larger than the count"
            )
        return WindowSpec("count", count, hop)
    unit = args[0]
    unit_name = unit.name.lower() if isinstance(unit, exp.Column) and not unit.table else ""
    if unit_name not in UNITS_MS:
        raise WindowSyntaxError(
            f"{where(unit)}: {name}: the time unit {unit.sql()!r} is not one of dd, hh, mi, ss, "
            f"ms; write {_USAGE[name]}"
        )
    scale = UNITS_MS[unit_name]
    values = [_positive(a, name, what, where) * scale for a, what in zip(args[1:], _PARAMETERS[name], strict=False)]
    if name == "TUMBLINGWINDOW":
        return WindowSpec("tumbling", values[0], values[0], unit=unit_name)
    if name == "HOPPINGWINDOW":
        return WindowSpec("hopping", values[0], values[1], unit=unit_name)
    if name == "SLIDINGWINDOW":
        return WindowSpec("sliding", values[0], 0, delay=values[1] if len(values) > 1 else 0, unit=unit_name)
    return WindowSpec("session", values[0], values[1], unit=unit_name)


def _positive(node: exp.Expression, name: str, what: str, where) -> int:
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            value = int(node.this)
        except ValueError:
            value = 0
        if value > 0:
            return value
    raise WindowSyntaxError(f"{where(node)}: {name}: the {what} must be a positive integer, got {node.sql()}")
