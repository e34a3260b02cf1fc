"""eKuiper's window syntax on top of sqlglot: the parser additions and the reading of GROUP BY.

eKuiper writes windows as calls in GROUP BY (``GROUP BY a, TUMBLINGWINDOW(ss, 10)``),
optionally followed by ``FILTER (WHERE cond)`` (rows the window never sees) and,
for a sliding window, ``OVER (WHEN cond)`` (only rows meeting ``cond`` trigger
it).  sqlglot parses ``FILTER`` already; ``OVER (WHEN ...)`` is not SQL it
knows, so ``WindowSyntaxParser`` reads it into a ``WindowTrigger`` node.

"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import TokenType, exp, parser

from loader.rules.aggregates import BUILTIN_AGGREGATES
from loader.rules.windows import UNITS_MS, WindowSpec

#: eKuiper's aggregate functions: the dialect parses them as plain calls (sqlglot has typed nodes of other
#: arities for some: ``last_value(x, true)`` is a parse error there).
AGGREGATE_NAMES = frozenset(BUILTIN_AGGREGATES)
#: Where a node is in the statement (``line L, column C``), for messages.
Where = Callable[[exp.Expr], str]
WINDOW_FUNCTIONS = ("TUMBLINGWINDOW", "HOPPINGWINDOW", "SLIDINGWINDOW", "SESSIONWINDOW", "COUNTWINDOW")
#: eKuiper windows the loader does not run yet.
UNSUPPORTED_WINDOWS = ("STATEWINDOW",)


class WindowSyntaxError(Exception):
    """A window clause eKuiper would refuse, or one not supported; the message names it."""


class WindowTrigger(exp.Expression):
    """``<window call> OVER (WHEN <condition>)``."""

    arg_types = {"this": True, "expression": True}


class WindowSyntaxParser(parser.Parser):
    """sqlglot's parser, reading a window call's ``FILTER (WHERE ...)`` and ``OVER (WHEN ...)``."""

    def _parse_window(self, this: exp.Expr | None, alias: bool = False) -> exp.Expr | None:
        while not alias:  # FILTER (WHERE ...) and OVER (WHEN ...), in either order
            if (
                self._next_tokens(TokenType.OVER, TokenType.L_PAREN)
                and self._tokens[self._index + 2].text.upper() == "WHEN"
            ):
                self._advance(3)
                this = self.expression(WindowTrigger(this=this, expression=self._parse_assignment()))
            elif self._next_tokens(TokenType.FILTER, TokenType.L_PAREN):
                self._advance(2)
                self._match(TokenType.WHERE)
                this = self.expression(exp.Filter(this=this, expression=exp.Where(this=self._parse_assignment())))
            else:
                break
            self._match_r_paren()
        return super()._parse_window(this, alias)

    def _next_tokens(self, *types: TokenType) -> bool:
        """Whether the next tokens are of ``types`` and one more token follows them."""
        tokens, index = self._tokens, self._index
        return index + len(types) < len(tokens) and all(
            tokens[index + i].token_type == kind for i, kind in enumerate(types)
        )


@dataclass
class WindowClause:
    """The window of a rule as written: its spec, the node (for positions) and its conditions."""

    spec: WindowSpec
    node: exp.Expression
    filter: exp.Expression | None = None
    trigger: exp.Expression | None = None


def read_group_by(group: exp.Group, where: Where) -> tuple[WindowClause | None, list[exp.Expression]]:
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


def check_no_window_call(node: exp.Expression, clause: str, where: Where) -> None:
    """Refuse a window function anywhere but directly in GROUP BY."""
    for sub in node.walk():
        if isinstance(sub, exp.Anonymous) and str(sub.this).upper() in (*WINDOW_FUNCTIONS, *UNSUPPORTED_WINDOWS):
            raise WindowSyntaxError(
                f"{where(sub)}: {str(sub.this).upper()} in {clause}: a window goes in GROUP BY, "
                "e.g. GROUP BY TUMBLINGWINDOW(ss, 10)"
            )


def _window_clause(item: exp.Expression, where: Where) -> WindowClause | None:
    filter_node = trigger = None
    node = item
    while isinstance(node, (exp.Filter, WindowTrigger)):
        if isinstance(node, exp.Filter):
            filter_node = node.expression.this if isinstance(node.expression, exp.Where) else node.expression
        else:
            trigger = node.expression
        node = node.this
    name = str(node.this).upper() if isinstance(node, exp.Anonymous) else ""
    if name in UNSUPPORTED_WINDOWS:
        raise WindowSyntaxError(
            f"{where(node)}: {name} is not supported yet; the windows are {', '.join(WINDOW_FUNCTIONS)}"
        )
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


def _spec(name: str, args: list[exp.Expression], node: exp.Expression, where: Where) -> WindowSpec:
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


def _positive(node: exp.Expression, name: str, what: str, where: Where) -> int:
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            value = int(node.this)
        except ValueError:
            value = 0
        if value > 0:
            return value
    raise WindowSyntaxError(f"{where(node)}: {name}: the {what} must be a positive integer, got {node.sql()}")
