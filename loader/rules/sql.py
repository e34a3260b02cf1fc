"""The rule SQL subset: parse with sqlglot, check the subset, compile to closures.

Supported: ``SELECT`` with ``*``, columns, nested fields (``a.b.c``),
aliases, literals, arithmetic, comparisons, ``AND``/``OR``/``NOT``,
``IS [NOT] NULL``, ``IN``, ``BETWEEN``, ``CASE`` and function calls;
``FROM`` one stream; ``WHERE``.  Anything else is rejected when the rule is
created, naming the construct and its line and column.

Expressions are compiled once into nested Python closures over a record
(``dict``), so evaluating a rule per record does no tree walking.  SQL's
three-valued logic is kept where it matters: arithmetic on NULL is NULL and a
comparison with NULL is not true, so such records are filtered out.

Batched function calls: a resolved function may also offer ``many(rows)``
(one result per argument list, a failed row's result being an exception) and
a ``batching`` flag.  ``CompiledQuery.apply_many`` then evaluates a batch of
records in passes: each pass evaluates every unfinished record exactly as
``apply`` would, except that a batchable call site without a result for that
record notes its arguments and abandons the record for this pass; then each
call site with noted rows is called once, with all of them, and the next
pass reads those results.  So a call happens only for records whose
per-record evaluation reaches it (WHERE first, CASE branches, short-circuits
all respected), with the same arguments, inner calls before outer ones.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import sqlglot
from sqlglot import exp, tokens
from sqlglot.dialects.dialect import Dialect

from loader.rules.aggregates import (
    BUILTIN_AGGREGATES,
    WINDOW_RANGE_FUNCTIONS,
    GroupedQuery,
    aggregate_call,
    window_range_call,
)
from loader.rules.window_syntax import (
    WindowClause,
    WindowSyntaxError,
    WindowSyntaxParser,
    check_no_window_call,
    read_group_by,
)

Row = dict
Evaluator = Callable[[Row], Any]
#: Given a function name (lower case) and the call's index in the rule, return
#: a callable taking the evaluated argument list, or None if unknown.
FunctionResolver = Callable[[str, int], Callable[[list], Any] | None]

SUPPORTED = "SELECT columns, *, nested a.b and a->b, aliases, literals, arithmetic, comparisons, AND/OR/NOT, CASE, " \
            "IS NULL, IN, BETWEEN and function calls, FROM one stream, WHERE, GROUP BY a window and fields, " \
            "HAVING, ORDER BY with a window, aggregate functions"


class SqlError(Exception):
    """A rule's SQL is outside the subset or malformed; says where and what."""


@dataclass
class Projection:
    name: str
    node: exp.Expression


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


class _Deferred(Exception):
    """A batchable call site has no result yet for the record being evaluated."""


class _Batch:
    """State of one ``apply_many``, read by the call-site closures: which record, which results."""

    __slots__ = ("row", "results", "pending")

    def __init__(self) -> None:
        self.row = 0
        #: call site index -> {record index: value or exception}
        self.results: dict[int, dict[int, Any]] = {}
        #: call site index -> (function, record indexes, argument lists)
        self.pending: dict[int, tuple[Any, list[int], list[list]]] = {}

    def defer(self, index: int, function: Any, args: list) -> None:
        entry = self.pending.get(index)
        if entry is None:
            entry = self.pending[index] = (function, [], [])
        entry[1].append(self.row)
        entry[2].append(args)

    def call_pending(self) -> None:
        """One batched call per call site that has rows waiting."""
        pending, self.pending = self.pending, {}
        for index, (function, rows, args) in pending.items():
            try:
                values = list(function.many(args))
                if len(values) != len(rows):
                    raise RuntimeError(f"a batched call returned {len(values)} results for {len(rows)} rows")
            except Exception as exc:  # the whole call failed: so did each of its rows
                values = [exc] * len(rows)
            results = self.results.setdefault(index, {})
            for row, value in zip(rows, values):
                results[row] = value


class _Scope:
    """Shared by a query's call-site closures: the batch being evaluated, if any."""

    __slots__ = ("batch",)

    def __init__(self) -> None:
        self.batch: _Batch | None = None


@dataclass
class CompiledQuery:
    stream: str
    star: bool
    columns: list[tuple[str, Evaluator]]
    where: Evaluator | None
    #: functions of the call sites that can take batches (they have ``many``).
    batch_functions: list[Any] = field(default_factory=list)
    scope: _Scope = field(default_factory=_Scope, repr=False)
    #: For a rule with a window: how a window's rows become its emission (loader/rules/windowed.py runs it).
    grouped: GroupedQuery | None = None
    window: WindowClause | None = None
    filter: Evaluator | None = None
    trigger: Evaluator | None = None

    def apply(self, row: Row) -> Row | None:
        """The output record for ``row``, or None when WHERE filters it out."""
        if self.where is not None and self.where(row) is not True:
            return None
        if not self.columns:
            return row if self.star else {}
        out: Row = dict(row) if self.star else {}
        for name, evaluate in self.columns:
            out[name] = evaluate(row)
        return out

    @property
    def batching(self) -> bool:
        """True when a function of the query can take batches right now: use ``apply_many``."""
        return any(getattr(f, "batching", True) for f in self.batch_functions)

    def apply_many(self, rows: list[Row]) -> list[Any]:
        """Per record, in order: its output record, None (filtered out) or the exception that failed it."""
        outcomes: list[Any] = [None] * len(rows)
        todo: list[int] = list(range(len(rows)))
        batch = self.scope.batch = _Batch()
        apply = self.apply
        try:
            # Each pass either finishes a record or leaves it waiting on a call site that
            # gets its result before the next pass; a record reaches each site once.
            for _ in range(len(self.batch_functions) + 2):
                waiting: list[int] = []
                for index in todo:
                    batch.row = index
                    try:
                        outcomes[index] = apply(rows[index])
                    except _Deferred:
                        waiting.append(index)
                    except Exception as exc:
                        outcomes[index] = exc
                if not waiting:
                    return outcomes
                batch.call_pending()
                todo = waiting
            for index in todo:  # unreachable unless a closure misbehaves
                outcomes[index] = RuntimeError("function results did not settle for this record")
            return outcomes
        finally:
            self.scope.batch = None


_CLAUSES = {
    "joins": "JOIN", "limit": "LIMIT",
    "offset": "OFFSET", "distinct": "DISTINCT", "windows": "WINDOW", "with_": "WITH", "qualify": "QUALIFY",
    "laterals": "LATERAL", "pivots": "PIVOT", "into": "INTO", "kind": "SELECT modifiers",
}


def position(node: exp.Expr, sql: str) -> str:
    """``line L, column C`` of the first token of ``node`` that sqlglot located."""
    for sub in node.walk():
        meta = getattr(sub, "meta", None) or {}
        if "line" in meta:
            return f"line {meta['line']}, column {meta['col']}"
    text = node.sql()
    index = sql.find(text)
    if index < 0:
        return "somewhere in the statement"
    line = sql.count("\n", 0, index) + 1
    column = index - (sql.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def unsupported(node: exp.Expr, sql: str, construct: str) -> SqlError:
    return SqlError(f"{position(node, sql)}: {construct} is not supported in rules (supported: {SUPPORTED})")


class EkuiperDialect(Dialect):
    """eKuiper's lexical rules: ``"..."`` is a string, as ``'...'`` is; backticks quote identifiers.

    Under sqlglot's default (ANSI) rules ``WHERE v = "v1"`` compares two
    columns and passes nothing, and ``THEN "high"`` yields null, silently.
    """

    class Tokenizer(tokens.Tokenizer):
        QUOTES = ["'", '"']
        IDENTIFIERS = ["`"]

    class Parser(WindowSyntaxParser):
        """Windows' ``OVER (WHEN ...)`` and eKuiper's aggregate names (loader/rules/window_syntax.py)."""


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
    for item in tree.expressions:
        if isinstance(item, exp.Star):
            plan.star = True
            continue
        _check_expression(item, sql)
        plan.projections.append(Projection(_output_name(item), item.this if isinstance(item, exp.Alias) else item))
    condition = tree.args.get("where")
    if condition is not None:
        _check_expression(condition.this, sql)
        plan.where = condition.this
    _read_grouping(tree, plan, sql)
    plan.functions = [(name, args) for node in _all_nodes(plan) for name, args in [_function_call(node)] if name]
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
                raise SqlError(f"{position(clause, sql)}: {construct} without a window: eKuiper groups, filters "
                               "and sorts the rows of a window; add one, e.g. GROUP BY TUMBLINGWINDOW(ss, 10)")


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


def _stream_of(tree: exp.Select, sql: str) -> str:
    source = tree.args.get("from_") or tree.args.get("from")
    if source is None:
        raise SqlError("the rule has no FROM clause: name the stream, e.g. SELECT * FROM demo")
    table = source.this
    if not isinstance(table, exp.Table) or table.args.get("db") or table.args.get("catalog"):
        raise unsupported(table, sql, "FROM anything but one stream name")
    return table.name


def _output_name(item: exp.Expression) -> str:
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    if isinstance(item, exp.JSONExtract) and isinstance(item.expression, exp.Column):
        return item.expression.name  # eKuiper: name->first is named "first"
    name, _ = _function_call(item)
    return name or item.sql()


_ALLOWED = (
    exp.Alias, exp.Column, exp.Identifier, exp.Literal, exp.Null, exp.Boolean, exp.Paren, exp.Neg, exp.Not,
    exp.And, exp.Or, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT,
    exp.LTE, exp.Is, exp.In, exp.Between, exp.Case, exp.If, exp.Func, exp.Dot, exp.Tuple,
)


def _check_expression(node: exp.Expr, sql: str) -> None:
    for sub in node.walk():
        if isinstance(sub, (exp.Select, exp.Subquery)):
            raise unsupported(sub, sql, "a subquery")
        if isinstance(sub, exp.AggFunc) and not isinstance(sub, exp.Anonymous):
            raise unsupported(sub, sql, f"aggregate function {sub.sql_name()} (not one of eKuiper's)")
        if isinstance(sub, exp.JSONExtract) and not isinstance(sub.expression, (exp.Column, exp.Dot)):
            raise unsupported(sub, sql, "-> followed by anything but a field name")
        if isinstance(sub, exp.Star) and not isinstance(sub.parent, exp.Func):
            raise unsupported(sub, sql, "* inside an expression")
        if not isinstance(sub, _ALLOWED) and not isinstance(sub, exp.Star):
            raise unsupported(sub, sql, sub.key.upper())


def _all_nodes(plan: SelectPlan):
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


def _function_call(node: exp.Expression) -> tuple[str | None, list[exp.Expression]]:
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


# --------------------------------------------------------------------- compile

_ARITHMETIC: dict[type[exp.Expr], Callable[[Any, Any], Any]] = {exp.Add: operator.add, exp.Sub: operator.sub, exp.Mul: operator.mul, exp.Mod: operator.mod}
_COMPARISON: dict[type[exp.Expr], Callable[[Any, Any], Any]] = {exp.EQ: operator.eq, exp.NEQ: operator.ne, exp.GT: operator.gt, exp.GTE: operator.ge,
               exp.LT: operator.lt, exp.LTE: operator.le}


class _Compiler:
    def __init__(self, plan: SelectPlan, resolve: FunctionResolver, aggregates: frozenset[str] = frozenset()) -> None:
        self.plan = plan
        self.resolve = resolve
        self.function_index = 0
        self.scope = _Scope()
        self.batch_functions: list[Any] = []
        #: Portable functions whose IsAggregate is true (built-in aggregates are always known).
        self.aggregates = aggregates
        #: Where aggregates are refused while compiling (a clause name), None where they are allowed.
        self.refuse_aggregates: str | None = None
        self.found_aggregate = False

    def compile(self, node: exp.Expression) -> Evaluator:
        if isinstance(node, exp.Paren):
            return self.compile(node.this)
        if isinstance(node, (exp.Column, exp.Dot)):
            return self._column(node)
        if isinstance(node, exp.JSONExtract):
            return self._arrow(node)
        if isinstance(node, exp.Literal):
            value = node.this if node.is_string else _number(node.this)
            return lambda row: value
        if isinstance(node, exp.Null):
            return lambda row: None
        if isinstance(node, exp.Boolean):
            truth = bool(node.this)
            return lambda row: truth
        arithmetic = _ARITHMETIC.get(type(node))
        if arithmetic is not None:
            return _null_safe(arithmetic, self.compile(node.this), self.compile(node.expression))
        if isinstance(node, exp.Div):
            return _null_safe(_divide, self.compile(node.this), self.compile(node.expression))
        comparison = _COMPARISON.get(type(node))
        if comparison is not None:
            return _compare(comparison, self.compile(node.this), self.compile(node.expression))
        if isinstance(node, exp.Neg):
            inner = self.compile(node.this)
            return lambda row: None if (v := inner(row)) is None else -v
        if isinstance(node, (exp.And, exp.Or, exp.Not)):
            return self._logic(node)
        if isinstance(node, exp.Is):
            inner = self.compile(node.this)
            return lambda row: inner(row) is None
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, exp.Between):
            value, low, high = self.compile(node.this), self.compile(node.args["low"]), self.compile(node.args["high"])
            return _between(value, low, high)
        if isinstance(node, exp.Case):
            return self._case(node)
        name, args = _function_call(node)
        if name:
            return self._call(node, name, args)
        raise unsupported(node, self.plan.sql, node.key.upper())

    def _column(self, node: exp.Expression) -> Evaluator:
        parts = [p.name for p in reversed(list(_column_parts(node)))]
        if len(parts) > 1 and parts[0] == self.plan.stream:
            parts = parts[1:]
        if len(parts) == 1:
            key = parts[0]
            return lambda row: row.get(key)
        return lambda row: _nested(row, parts)

    def _arrow(self, node: exp.JSONExtract) -> Evaluator:
        """``x->a.b``: key ``a``, then ``b``, of the object ``x`` evaluates to (eKuiper's ``->``)."""
        inner = self.compile(node.this)
        steps = [p.name for p in reversed(list(_column_parts(node.expression)))]
        return lambda row: _nested(inner(row), steps)

    def _logic(self, node: exp.Expression) -> Evaluator:
        if isinstance(node, exp.Not):
            inner = self.compile(node.this)
            return lambda row: None if (v := inner(row)) is None else not v
        left, right = self.compile(node.this), self.compile(node.expression)
        if isinstance(node, exp.And):
            return lambda row: bool(left(row)) and bool(right(row))
        return lambda row: bool(left(row)) or bool(right(row))

    def _in(self, node: exp.In) -> Evaluator:
        value = self.compile(node.this)
        options = [self.compile(e) for e in node.expressions]
        return lambda row: (v := value(row)) is not None and any(v == o(row) for o in options)

    def _case(self, node: exp.Case) -> Evaluator:
        subject = self.compile(node.this) if node.this is not None else None
        branches = [(self.compile(i.this), self.compile(i.args["true"])) for i in node.args.get("ifs", [])]
        default = self.compile(node.args["default"]) if node.args.get("default") is not None else (lambda row: None)

        def evaluate(row: Row) -> Any:
            base = subject(row) if subject is not None else None
            for condition, result in branches:
                test = condition(row)
                if (subject is not None and test == base) or (subject is None and test is True):
                    return result(row)
            return default(row)

        return evaluate

    def _call(self, node: exp.Expression, name: str, args: list[exp.Expression]) -> Evaluator:
        if name in WINDOW_RANGE_FUNCTIONS and not args:
            return window_range_call(name)
        if name in BUILTIN_AGGREGATES or name in self.aggregates:
            return self._aggregate(node, name, args)
        index = self.function_index
        self.function_index += 1
        function = self.resolve(name, index)
        if function is None:
            raise SqlError(f"{position(node, self.plan.sql)}: unknown function {name!r}: no loaded plugin provides it "
                           "and it is not a built-in (see docs/rules.md)")
        evaluators = [self.compile(a) for a in args if not isinstance(a, exp.Star)]
        if getattr(function, "many", None) is None:
            return lambda row: function([e(row) for e in evaluators])
        self.batch_functions.append(function)
        scope = self.scope

        def evaluate(row: Row) -> Any:
            args = [e(row) for e in evaluators]
            batch = scope.batch
            if batch is None:
                return function(args)
            results = batch.results.get(index)
            if results is not None and batch.row in results:
                value = results[batch.row]
                if isinstance(value, Exception):
                    raise value.with_traceback(None)
                return value
            batch.defer(index, function, args)
            raise _Deferred

        return evaluate


    def _aggregate(self, node: exp.Expression, name: str, args: list[exp.Expression]) -> Evaluator:
        """An aggregate call: each argument becomes the column of its values over the group's rows."""
        if self.refuse_aggregates is not None:
            raise SqlError(f"{position(node, self.plan.sql)}: aggregate function {name} is not allowed in "
                           f"{self.refuse_aggregates}; aggregates go in SELECT and HAVING")
        self.found_aggregate = True
        function: Callable[[list], Any] | None = BUILTIN_AGGREGATES.get(name)
        if name in self.aggregates:
            index = self.function_index
            self.function_index += 1
            function = self.resolve(name, index)
        if function is None:
            raise SqlError(f"{position(node, self.plan.sql)}: aggregate function {name!r} is not available")
        self.refuse_aggregates = "an aggregate function's arguments"
        try:
            arguments = [None if isinstance(a, exp.Star) else self.compile(a) for a in args]
        finally:
            self.refuse_aggregates = None
        if any(a is None for a in arguments) and name in BUILTIN_AGGREGATES and name not in ("count", "collect",
                                                                                             "merge_agg"):
            raise SqlError(f"{position(node, self.plan.sql)}: {name}(*) is not allowed; name a column")
        return aggregate_call(name, function, arguments)


def compile_query(plan: SelectPlan, resolve: FunctionResolver, aggregates: frozenset[str] = frozenset()
                  ) -> CompiledQuery:
    """Bind and compile ``plan``; ``aggregates`` names the portable functions whose IsAggregate is true."""
    compiler = _Compiler(plan, resolve, aggregates)
    columns = [(p.name, compiler.compile(p.node)) for p in plan.projections]
    selects_aggregate = compiler.found_aggregate
    compiler.refuse_aggregates = "WHERE"
    where = compiler.compile(plan.where) if plan.where is not None else None
    query = CompiledQuery(stream=plan.stream, star=plan.star, columns=columns, where=where,
                          batch_functions=compiler.batch_functions, scope=compiler.scope)
    window = plan.window
    if window is None:
        return query
    compiler.refuse_aggregates = "GROUP BY"
    keys = [compiler.compile(k) for k in plan.group_keys]
    compiler.refuse_aggregates = "FILTER (WHERE ...)"
    query.filter = compiler.compile(window.filter) if window.filter is not None else None
    compiler.refuse_aggregates = "OVER (WHEN ...)"
    query.trigger = compiler.compile(window.trigger) if window.trigger is not None else None
    compiler.refuse_aggregates = None
    having = compiler.compile(plan.having) if plan.having is not None else None
    order = [(compiler.compile(node), descending) for node, descending in plan.order]
    query.window = window
    query.grouped = GroupedQuery(star=plan.star, columns=columns, keys=keys, having=having, order=order,
                                 aggregate=selects_aggregate)
    return query


def literal_arguments(args: list[exp.Expression]) -> list[Any]:
    """What a portable function's Validate receives: literal values, else the argument's SQL text."""
    values: list[Any] = []
    for arg in args:
        if isinstance(arg, exp.Literal):
            values.append(arg.this if arg.is_string else _number(arg.this))
        else:
            values.append(arg.sql())
    return values


def _column_parts(node: exp.Expression):
    """Identifiers of a (possibly nested) column, innermost last."""
    if isinstance(node, exp.Dot):
        yield node.expression
        yield from _column_parts(node.this)
        return
    for key in ("this", "table", "db", "catalog"):
        part = node.args.get(key)
        if isinstance(part, exp.Identifier):
            yield part
        elif isinstance(part, exp.Expression):
            yield from _column_parts(part)


def _nested(row: Row, parts: list[str]) -> Any:
    value: Any = row
    for part in parts:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _divide(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a // b if a % b == 0 else a / b
    return a / b


def _null_safe(op: Callable[[Any, Any], Any], left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate(row: Row) -> Any:
        a = left(row)
        if a is None:
            return None
        b = right(row)
        return None if b is None else op(a, b)

    return evaluate


def _compare(op: Callable[[Any, Any], bool], left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate(row: Row) -> bool | None:
        a, b = left(row), right(row)
        if a is None or b is None:
            return None
        try:
            return op(a, b)
        except TypeError:
            return None

    return evaluate


def _between(value: Evaluator, low: Evaluator, high: Evaluator) -> Evaluator:
    def evaluate(row: Row) -> bool | None:
        v, lo, hi = value(row), low(row), high(row)
        if v is None or lo is None or hi is None:
            return None
        return lo <= v <= hi

    return evaluate
