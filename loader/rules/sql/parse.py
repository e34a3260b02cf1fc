"""A rule's statement parsed into a ``SelectPlan`` and checked against the subset.

Everything about the statement that does not depend on the plugins loaded
is decided here, when the rule is created, before any function is bound:
which clauses and expression nodes the subset allows (``meta(key)``'s form
included), the output names, the window, grouping, HAVING and ORDER BY (with
SELECT aliases put in), and the function calls the rule makes
(``SelectPlan.functions``, which the rules reconciler resolves by name).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from loader.rules.sql.dialect import EkuiperDialect, SqlError, describe, position, unsupported
from loader.rules.window_syntax import (
    WindowClause,
    WindowSyntaxError,
    check_no_window_call,
    read_group_by,
)


@dataclass
class Projection:
    name: str
    node: exp.Expression
    #: named with AS: the name is an alias other expressions may use
    aliased: bool = False


@dataclass
class SelectPlan:
    """A parsed, subset-checked SELECT, before functions are bound."""

    sql: str
    stream: str
    star: bool
    projections: list[Projection]
    where: exp.Expression | None
    functions: list[tuple[str, list[exp.Expression]]] = field(default_factory=list)
    #: GROUP BY's window (with its FILTER and OVER (WHEN) conditions) and its other expressions.
    window: WindowClause | None = None
    group_keys: list[exp.Expression] = field(default_factory=list)
    having: exp.Expression | None = None
    #: ORDER BY: (expression, descending).
    order: list[tuple[exp.Expression, bool]] = field(default_factory=list)


_CLAUSES = {
    "joins": "JOIN",
    "limit": "LIMIT",
    "offset": "OFFSET",
    "distinct": "DISTINCT",
    "windows": "WINDOW",
    "with_": "WITH",
    "qualify": "QUALIFY",
    "laterals": "LATERAL",
    "pivots": "PIVOT",
    "into": "INTO",
    "kind": "SELECT modifiers",
}


def parse_select(sql: str) -> SelectPlan:
    """Parse ``sql`` and check it is inside the subset."""
    try:
        statements = sqlglot.parse(sql, read=EkuiperDialect)
    except sqlglot.errors.ParseError as exc:
        detail = exc.errors[0] if exc.errors else {}
        where = f"line {detail.get('line', '?')}, column {detail.get('col', '?')}"
        raise SqlError(f"{where}: {detail.get('description', str(exc))}") from None
    present = [s for s in statements if s is not None]
    if len(present) != 1:
        raise SqlError(f"a rule has exactly one SELECT statement, found {len(present)}")
    tree = present[0]
    if not isinstance(tree, exp.Select):
        raise unsupported(tree, sql, f"{tree.key.upper()} statement")
    for key, construct in _CLAUSES.items():
        if tree.args.get(key):
            raise unsupported(tree.args[key] if isinstance(tree.args[key], exp.Expression) else tree, sql, construct)
    stream = _stream_of(tree, sql)
    plan = SelectPlan(sql=sql, stream=stream, star=False, projections=[], where=None)
    unnamed = 0
    for item in tree.expressions:
        if isinstance(item, exp.Star):
            plan.star = True
            continue
        _check_expression(item, sql)
        name = _output_name(item)
        if name is None:  # eKuiper names unaliased expressions kuiper_field_0, kuiper_field_1, ...
            name, unnamed = f"kuiper_field_{unnamed}", unnamed + 1
        plan.projections.append(
            Projection(name, item.this if isinstance(item, exp.Alias) else item, aliased=isinstance(item, exp.Alias))
        )
    condition = tree.args.get("where")
    if condition is not None:
        _check_expression(condition.this, sql)
        plan.where = condition.this
    _read_grouping(tree, plan, sql)
    plan.functions = [
        (name, args)
        for node in _all_nodes(plan)
        for name, args in [function_call(node)]
        if name and name not in SPECIAL_FORMS
    ]
    return plan


def _read_grouping(tree: exp.Select, plan: SelectPlan, sql: str) -> None:
    """GROUP BY (a window and fields), HAVING and ORDER BY; eKuiper runs the last two only over a window."""
    group = tree.args.get("group")
    if group is not None:
        try:
            plan.window, plan.group_keys = read_group_by(group, lambda node: position(node, sql))
        except WindowSyntaxError as exc:
            raise SqlError(str(exc)) from None
        for node in [*plan.group_keys, *_window_conditions(plan)]:
            _check_expression(node, sql)
    having = tree.args.get("having")
    if having is not None:
        _check_expression(having.this, sql)
        plan.having = _with_aliases(having.this, plan)
    order = tree.args.get("order")
    if order is not None:
        for item in order.expressions:
            node = item.this if isinstance(item, exp.Ordered) else item
            _check_expression(node, sql)
            plan.order.append((_with_aliases(node, plan), bool(item.args.get("desc"))))
    clauses: list[tuple[str, exp.Expression | None]] = [("SELECT", p.node) for p in plan.projections]
    clauses += [("WHERE", plan.where), ("HAVING", plan.having), *(("GROUP BY", k) for k in plan.group_keys)]
    clauses += [("ORDER BY", n) for n, _ in plan.order]
    try:
        for name, expression in clauses:
            if expression is not None:
                check_no_window_call(expression, name, lambda sub: position(sub, sql))
    except WindowSyntaxError as exc:
        raise SqlError(str(exc)) from None
    if plan.window is None:
        for construct, clause in (("GROUP BY fields", group), ("HAVING", having), ("ORDER BY", order)):
            if clause is not None:
                raise SqlError(
                    f"{position(clause, sql)}: {construct} without a window: eKuiper groups, filters "
                    "and sorts the rows of a window; add one, e.g. GROUP BY TUMBLINGWINDOW(ss, 10)"
                )


def _window_conditions(plan: SelectPlan) -> list[exp.Expression]:
    window = plan.window
    return [] if window is None else [c for c in (window.filter, window.trigger) if c is not None]


def _with_aliases(node: exp.Expression, plan: SelectPlan) -> exp.Expression:
    """``node`` with SELECT aliases replaced by their expressions (HAVING and ORDER BY may name them)."""
    aliases = {p.name: p.node for p in plan.projections}

    def swap(sub: exp.Expression) -> exp.Expression:
        if isinstance(sub, exp.Column) and not sub.table and sub.name in aliases:
            return aliases[sub.name].copy()
        return sub

    return node.copy().transform(swap)


def call_position(plan: SelectPlan, name: str) -> str:
    """``line L, column C`` of the rule's first call of function ``name`` (for messages about it)."""
    for node in _all_nodes(plan):
        if function_call(node)[0] == name:
            return position(node, plan.sql)
    return "somewhere in the statement"


def _stream_of(tree: exp.Select, sql: str) -> str:
    source = tree.args.get("from_") or tree.args.get("from")
    if source is None:
        raise SqlError("the rule has no FROM clause: name the stream, e.g. SELECT * FROM demo")
    table = source.this
    if not isinstance(table, exp.Table) or table.args.get("db") or table.args.get("catalog"):
        raise unsupported(table, sql, "FROM anything but one stream name")
    return table.name


def _output_name(item: exp.Expression) -> str | None:
    """A field's name as eKuiper gives it: its alias, column, key after ->, or function; None for the others."""
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    if isinstance(item, exp.JSONExtract) and isinstance(item.expression, exp.Column):
        return item.expression.name  # eKuiper: name->first is named "first"
    name, _ = function_call(item)
    return name


_ALLOWED = (
    exp.Alias,
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.And,
    exp.Or,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Case,
    exp.If,
    exp.Func,
    exp.Dot,
    exp.Tuple,
    exp.Like,
    exp.BitwiseAnd,
    exp.BitwiseOr,
    exp.BitwiseXor,
    exp.Bracket,
    exp.Slice,
)

#: Calls the compiler reads itself: ``meta(key)`` (and ``mqtt(key)``) name source metadata, not a value.
SPECIAL_FORMS = frozenset({"meta", "mqtt"})


def _check_expression(node: exp.Expr, sql: str) -> None:
    for sub in node.walk():
        if isinstance(sub, (exp.Select, exp.Subquery)):
            raise unsupported(sub, sql, "a subquery")
        if isinstance(sub, exp.AggFunc) and not isinstance(sub, exp.Anonymous):
            raise unsupported(
                sub, sql, f"function {sub.sql_name()} (an aggregate or analytic function the loader does not provide)"
            )
        if isinstance(sub, exp.JSONExtract) and not isinstance(sub.expression, (exp.Column, exp.Dot)):
            raise unsupported(sub, sql, "-> followed by anything but a field name")
        if isinstance(sub, exp.Star) and not isinstance(sub.parent, exp.Func):
            raise unsupported(sub, sql, "* inside an expression")
        if isinstance(sub, exp.Alias) and sub is not node:
            if isinstance(sub.parent, exp.Anonymous) and str(sub.parent.this).lower() == "cast":
                raise unsupported(sub, sql, 'CAST(x AS type) (eKuiper writes cast(x, "bigint"))')
            raise unsupported(sub, sql, f"AS inside an expression ({describe(sub)})")
        if isinstance(sub, exp.Bracket) and len(sub.expressions) != 1:
            raise unsupported(sub, sql, f"{describe(sub)} (one index or slice per [])")
        if isinstance(sub, exp.Anonymous) and str(sub.this).lower() in SPECIAL_FORMS:
            _check_meta(sub, sql)
        if not isinstance(sub, _ALLOWED) and not isinstance(sub, exp.Star):
            raise unsupported(sub, sql, describe(sub))


def _check_meta(node: exp.Anonymous, sql: str) -> None:
    """``meta(key)``, ``meta(stream.key)`` or ``meta(key->nested)``: a metadata key, not an expression."""
    args = node.expressions
    if len(args) != 1 or meta_path(args[0]) is None:
        raise SqlError(
            f"{position(node, sql)}: {str(node.this).lower()} takes one metadata key, e.g. meta(topic) or "
            f"meta(reading->device), got {describe(node)}"
        )


def meta_path(node: exp.Expression) -> list[str] | None:
    """The key path of meta's argument (stream qualifier dropped), or None if it is not a key path."""
    if isinstance(node, exp.Column):
        return [p.name for p in reversed(list(column_parts(node)))]
    if isinstance(node, exp.JSONExtract):
        head = meta_path(node.this)
        tail = [p.name for p in reversed(list(column_parts(node.expression)))]
        return None if head is None else head + tail
    if isinstance(node, exp.Dot):
        return [p.name for p in reversed(list(column_parts(node)))]
    return None


def _all_nodes(plan: SelectPlan) -> Iterator[exp.Expr]:
    for projection in plan.projections:
        yield from projection.node.walk()
    others = [plan.where, *plan.group_keys, *_window_conditions(plan), plan.having, *(n for n, _ in plan.order)]
    for node in others:
        if node is not None:
            yield from node.walk()


#: Func subclasses that are operators or conditionals, never calls to resolve: sqlglot 30 made the AND/OR/XOR
#: connectors Func nodes, so without this they would be looked up as functions named "and" and "or".
#: Func nodes that are operators of the language, not calls: ``a->b`` parses as JSONExtract.
_NOT_CALLS = (exp.Case, exp.If, exp.Connector, exp.JSONExtract)


def function_call(node: exp.Expr) -> tuple[str | None, list[exp.Expression]]:
    """(lower-case name, argument nodes) when ``node`` is a function call."""
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower(), list(node.expressions)
    if isinstance(node, exp.Func) and not isinstance(node, _NOT_CALLS):
        args: list[exp.Expression] = []
        for key in node.arg_types:
            value = node.args.get(key)
            if isinstance(value, exp.Expression):
                args.append(value)
            elif isinstance(value, list):
                args.extend(v for v in value if isinstance(v, exp.Expression))
        return node.sql_name().lower(), args
    return None, []


def column_parts(node: exp.Expression) -> Iterator[exp.Expression]:
    """Identifiers of a (possibly nested) column, innermost last."""
    if isinstance(node, exp.Dot):
        yield node.expression
        yield from column_parts(node.this)
        return
    for key in ("this", "table", "db", "catalog"):
        part = node.args.get(key)
        if isinstance(part, exp.Identifier):
            yield part
        elif isinstance(part, exp.Expression):
            yield from column_parts(part)
