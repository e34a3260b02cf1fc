"""The rule SQL subset: parse with sqlglot, check the subset, compile to closures.

Supported: ``SELECT`` with ``*`` (and extra fields), columns, nested fields
(``a.b.c``, ``a->b``), ``a[i]`` and ``a[i:j]``, aliases (usable in WHERE),
literals, arithmetic and bitwise operators, comparisons, ``AND``/``OR``/``NOT``,
``IS [NOT] NULL``, ``IN``, ``BETWEEN``, ``LIKE``, ``CASE``, ``meta(key)`` and
function calls; ``FROM`` one stream; ``WHERE``.  Anything else is rejected
when the rule is created, naming the construct and its line and column.
docs/rules.md has the table against eKuiper's SQL.

Expressions are compiled once into nested Python closures over a record
(``dict``), so evaluating a rule per record does no tree walking.  The
values follow eKuiper's rules (loader/rules/operators.py): null
comparisons, integer arithmetic staying integer, and a record whose
evaluation fails (mixed kinds, division by zero) failing alone.

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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import sqlglot
from sqlglot import exp, parser, tokens
from sqlglot.dialects.dialect import Dialect

from loader.rules import operators
from loader.rules.aggregates import (
    ARITY,
    BUILTIN_AGGREGATES,
    SECOND_ARGUMENT,
    STAR_AGGREGATES,
    WINDOW_RANGE_FUNCTIONS,
    Aggregate,
    Evaluator,
    GroupedQuery,
    Row,
    aggregate_call,
    window_range_call,
)
from loader.rules.functions import NOT_LITERAL, Builtin
from loader.rules.window_syntax import (
    AGGREGATE_NAMES,
    WindowClause,
    WindowSyntaxError,
    WindowSyntaxParser,
    check_no_window_call,
    read_group_by,
)

#: Given a function name (lower case) and the call's index in the rule, return
#: a callable taking the evaluated argument list, or None if unknown.
FunctionResolver = Callable[[str, int], Callable[[list[Any]], Any] | None]


@runtime_checkable
class BatchFunction(Protocol):
    """A call site that can also take many records' argument lists in one call (a portable function's)."""

    def __call__(self, args: list[Any], /) -> Any: ...

    def many(self, rows: list[list[Any]], /) -> list[Any]:
        """One result per argument list, in order; a failed row's result is its exception."""
        ...


SUPPORTED = (
    "SELECT columns, * (with extra fields), nested a.b and a->b, a[i] and a[i:j], aliases, literals, "
    "arithmetic and & | ^, comparisons, AND/OR/NOT, CASE, IS NULL, IN, BETWEEN, LIKE, meta(key) and function "
    "calls, FROM one stream, WHERE, GROUP BY a window and fields, HAVING, ORDER BY, aggregate functions; "
    "see docs/rules.md"
)


class SqlError(Exception):
    """A rule's SQL is outside the subset or malformed; says where and what."""


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
        self.pending: dict[int, tuple[BatchFunction, list[int], list[list[Any]]]] = {}

    def defer(self, index: int, function: BatchFunction, args: list[Any]) -> None:
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
            for row, value in zip(rows, values, strict=True):
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
    batch_functions: list[BatchFunction] = field(default_factory=list)
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


def position(node: exp.Expr, sql: str) -> str:
    """``line L, column C`` where ``node`` starts in ``sql`` (its first token that sqlglot located)."""
    for sub in node.walk():
        meta = getattr(sub, "meta", None) or {}
        if "start" in meta:
            return _line_column(sql, int(meta["start"]))
        if "line" in meta:
            return f"line {meta['line']}, column {meta['col']}"
    text = node.sql()
    index = sql.find(text)
    if index < 0:
        return "somewhere in the statement"
    return _line_column(sql, index)


def _line_column(sql: str, index: int) -> str:
    line = sql.count("\n", 0, index) + 1
    column = index - (sql.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def unsupported(node: exp.Expr, sql: str, construct: str) -> SqlError:
    return SqlError(f"{position(node, sql)}: {construct} is not supported in rules (supported: {SUPPORTED})")


def _builds_aggregate(build: Any) -> bool:
    """Whether a sqlglot function builder makes an aggregate function node."""
    made = getattr(build, "__self__", None)
    return isinstance(made, type) and issubclass(made, exp.AggFunc)


class EkuiperDialect(Dialect):
    """eKuiper's lexical rules: ``"..."`` is a string, as ``'...'`` is; backticks quote identifiers.

    Under sqlglot's default (ANSI) rules ``WHERE v = "v1"`` compares two
    columns and passes nothing, and ``THEN "high"`` yields null, silently.
    """

    class Tokenizer(tokens.Tokenizer):
        QUOTES = ["'", '"']
        IDENTIFIERS = ["`"]

    class Parser(WindowSyntaxParser):
        """Function calls as the user wrote them: ``name(args...)`` in order, never another SQL's special form.

        sqlglot knows hundreds of functions of other dialects and rewrites
        them (``cast(x, "bigint")`` expected ``CAST(x AS type)``, ``log(b, x)``
        swapped, ``name->first`` inside a call read as a lambda).  eKuiper
        has none of that syntax, so only aggregate functions keep their
        typed nodes; every other call is a plain call resolved by name.  eKuiper's own aggregates
        (``count``, ``last_value(x, true)``...) are plain calls too, and windows' ``OVER (WHEN ...)``
        is read by ``WindowSyntaxParser`` (loader/rules/window_syntax.py).
        """

        LAMBDAS = {}
        FUNCTION_PARSERS = {}
        NO_PAREN_FUNCTIONS = {}
        FUNCTIONS = {
            name: build
            for name, build in parser.Parser.FUNCTIONS.items()
            if _builds_aggregate(build) and name.lower() not in AGGREGATE_NAMES
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
        for name, args in [_function_call(node)]
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
        if _function_call(node)[0] == name:
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
    name, _ = _function_call(item)
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

#: What users call the constructs sqlglot has node names for, in refusals.
_CONSTRUCTS: dict[type, str] = {
    exp.DPipe: "the || operator",
    exp.ILike: "ILIKE",
    exp.SimilarTo: "SIMILAR TO",
    exp.RegexpLike: "RLIKE",
    exp.Window: "an OVER window",
    exp.Filter: "FILTER",
    exp.Exists: "EXISTS",
    exp.Interval: "INTERVAL",
    exp.Cast: 'CAST(... AS ...) (write cast(x, "bigint"))',
    exp.Lambda: "a lambda",
    exp.Distinct: "DISTINCT",
    exp.Placeholder: "a placeholder",
    exp.Array: "an ARRAY literal",
    exp.Struct: "a STRUCT literal",
    exp.IntDiv: "integer division DIV",
    exp.BitwiseLeftShift: "<<",
    exp.BitwiseRightShift: ">>",
    exp.BitwiseNot: "~",
    exp.NullSafeEQ: "<=>",
    exp.Escape: "LIKE ... ESCAPE",
}


def describe(node: exp.Expr) -> str:
    """The construct a node is, in the user's words: a known name, else its SQL text."""
    for kind, name in _CONSTRUCTS.items():
        if isinstance(node, kind):
            return name
    text = node.sql(dialect=EkuiperDialect)
    return f"'{text[:60]}{'...' if len(text) > 60 else ''}'"


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
    if len(args) != 1 or _meta_path(args[0]) is None:
        raise SqlError(
            f"{position(node, sql)}: {str(node.this).lower()} takes one metadata key, e.g. meta(topic) or "
            f"meta(reading->device), got {describe(node)}"
        )


def _meta_path(node: exp.Expression) -> list[str] | None:
    """The key path of meta's argument (stream qualifier dropped), or None if it is not a key path."""
    if isinstance(node, exp.Column):
        return [p.name for p in reversed(list(_column_parts(node)))]
    if isinstance(node, exp.JSONExtract):
        head = _meta_path(node.this)
        tail = [p.name for p in reversed(list(_column_parts(node.expression)))]
        return None if head is None else head + tail
    if isinstance(node, exp.Dot):
        return [p.name for p in reversed(list(_column_parts(node)))]
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


def _function_call(node: exp.Expr) -> tuple[str | None, list[exp.Expression]]:
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

#: Binary operators evaluated by loader/rules/operators.py, by the symbol eKuiper writes.
_ARITHMETIC: dict[type[exp.Expr], str] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
    exp.Mod: "%",
    exp.BitwiseAnd: "&",
    exp.BitwiseOr: "|",
    exp.BitwiseXor: "^",
}
_COMPARISON: dict[type[exp.Expr], str] = {
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
}

#: Key under which a record carries its source metadata, when the source sent any (see ``meta_of``).
META_ATTRIBUTE = "meta"


class _Compiler:
    def __init__(
        self, plan: SelectPlan, resolve: FunctionResolver, rule_id: str = "", aggregates: frozenset[str] = frozenset()
    ) -> None:
        self.plan = plan
        self.resolve = resolve
        self.rule_id = rule_id
        self.function_index = 0
        self.scope = _Scope()
        self.batch_functions: list[BatchFunction] = []
        #: SELECT aliases, usable in WHERE and the other fields as eKuiper allows (not inside their own definition)
        self.aliases = {p.name: p.node for p in plan.projections if p.aliased}
        self.expanding: set[str] = set()
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
        if isinstance(node, exp.Bracket):
            return self._bracket(node)
        if isinstance(node, exp.Literal):
            value = node.this if node.is_string else _number(node.this)
            return lambda row: value
        if isinstance(node, exp.Null):
            return lambda row: None
        if isinstance(node, exp.Boolean):
            truth = bool(node.this)
            return lambda row: truth
        symbol = _ARITHMETIC.get(type(node))
        if symbol is not None:
            return _arithmetic(symbol, self.compile(node.this), self.compile(node.expression))
        symbol = _COMPARISON.get(type(node))
        if symbol is not None:
            return _binary(operators.comparator(symbol), self.compile(node.this), self.compile(node.expression))
        if isinstance(node, exp.Neg):
            inner = self.compile(node.this)
            return lambda row: operators.negate(inner(row))
        if isinstance(node, (exp.And, exp.Or, exp.Not)):
            return self._logic(node)
        if isinstance(node, exp.Is):
            inner = self.compile(node.this)
            return lambda row: inner(row) is None
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, exp.Between):
            return self._between(node)
        if isinstance(node, exp.Like):
            return self._like(node)
        if isinstance(node, exp.Case):
            return self._case(node)
        name, args = _function_call(node)
        if name in SPECIAL_FORMS:  # meta(key); mqtt(topic) is eKuiper's meta for MQTT sources
            return self._meta(node)
        if name:
            return self._call(node, name, args)
        raise unsupported(node, self.plan.sql, describe(node))

    def _column(self, node: exp.Expression) -> Evaluator:
        parts = [p.name for p in reversed(list(_column_parts(node)))]
        if len(parts) > 1 and parts[0] == self.plan.stream:
            parts = parts[1:]
        if len(parts) == 1:
            key = parts[0]
            alias = self.aliases.get(key) if isinstance(node, exp.Column) and not node.table else None
            if alias is not None and key not in self.expanding:
                return self._alias(key, alias)
            return lambda row: row.get(key)
        return lambda row: _nested(row, parts)

    def _alias(self, name: str, node: exp.Expression) -> Evaluator:
        self.expanding.add(name)
        try:
            return self.compile(node)
        finally:
            self.expanding.discard(name)

    def _arrow(self, node: exp.JSONExtract) -> Evaluator:
        """``x->a.b``: key ``a``, then ``b``, of the object ``x`` evaluates to (eKuiper's ``->``)."""
        inner = self.compile(node.this)
        steps = [p.name for p in reversed(list(_column_parts(node.expression)))]
        return lambda row: _nested(inner(row), steps)

    def _bracket(self, node: exp.Bracket) -> Evaluator:
        """``a[i]`` and ``a[i:j]`` on arrays, as eKuiper's index and slice expressions."""
        inner = self.compile(node.this)
        selector = node.expressions[0]
        if isinstance(selector, exp.Slice):
            low = self.compile(selector.this) if selector.this is not None else (lambda row: None)
            high = self.compile(selector.expression) if selector.expression is not None else (lambda row: None)
            return lambda row: operators.slice_of(inner(row), low(row), high(row))
        at = self.compile(selector)
        return lambda row: operators.index(inner(row), at(row))

    def _logic(self, node: exp.Expression) -> Evaluator:
        if isinstance(node, exp.Not):
            inner = self.compile(node.this)
            return lambda row: operators.logical_not(inner(row))
        left, right = self.compile(node.this), self.compile(node.expression)
        if isinstance(node, exp.And):
            and_rest = operators.and_rest
            return lambda row: False if (a := left(row)) is False else and_rest(a, right(row))
        or_rest = operators.or_rest
        return lambda row: True if (a := left(row)) is True else or_rest(a, right(row))

    def _in(self, node: exp.In) -> Evaluator:
        value = self.compile(node.this)
        options = [self.compile(e) for e in node.expressions]

        def evaluate(row: Row) -> bool:
            v = value(row)
            if v is None:
                return False
            return any(_equal(v, o(row)) for o in options)

        return evaluate

    def _between(self, node: exp.Between) -> Evaluator:
        value, low, high = self.compile(node.this), self.compile(node.args["low"]), self.compile(node.args["high"])
        compare = operators.compare
        return lambda row: compare(">=", v := value(row), low(row)) and compare("<=", v, high(row))

    def _like(self, node: exp.Like) -> Evaluator:
        value, pattern = self.compile(node.this), self.compile(node.expression)
        if node.args.get("negate"):
            return lambda row: operators.logical_not(operators.like(value(row), pattern(row)))
        return lambda row: operators.like(value(row), pattern(row))

    def _case(self, node: exp.Case) -> Evaluator:
        subject = self.compile(node.this) if node.this is not None else None
        branches = [(self.compile(i.this), self.compile(i.args["true"])) for i in node.args.get("ifs", [])]
        default = self.compile(node.args["default"]) if node.args.get("default") is not None else (lambda row: None)

        def evaluate(row: Row) -> Any:
            base = subject(row) if subject is not None else None
            for condition, result in branches:
                test = condition(row)
                if (subject is not None and operators.compare("=", base, test)) or (subject is None and test is True):
                    return result(row)
            return default(row)

        return evaluate

    def _meta(self, node: exp.Expression) -> Evaluator:
        """``meta(key)``: a key of the record's source metadata (null when the source sent none)."""
        path = _meta_path(node.expressions[0]) or []
        if len(path) > 1 and path[0] == self.plan.stream:
            path = path[1:]
        return lambda row: _nested(getattr(row, META_ATTRIBUTE, None), path)

    def _call(self, node: exp.Expression, name: str, args: list[exp.Expression]) -> Evaluator:
        if name in WINDOW_RANGE_FUNCTIONS and not args:
            return window_range_call(name)
        if name in BUILTIN_AGGREGATES or name in self.aggregates:
            return self._aggregate(node, name, args)
        index = self.function_index
        self.function_index += 1
        function = self.resolve(name, index)
        if function is None:
            raise SqlError(
                f"{position(node, self.plan.sql)}: unknown function {name!r}: no loaded plugin provides it "
                "and it is not a built-in (see docs/rules.md)"
            )
        check = getattr(function, "admission_error", None)
        if check is not None:
            problem = check(_literal_values(args))
            if problem:
                raise SqlError(f"{position(node, self.plan.sql)}: {problem}")
        bind = getattr(function, "for_rule", None)
        if bind is not None:
            function = bind(self.rule_id)
        evaluators = [self.compile(a) for a in args if not isinstance(a, exp.Star)]
        if not isinstance(function, BatchFunction):
            call = function.call if isinstance(function, Builtin) else function  # without __call__'s hop
            return lambda row: call([e(row) for e in evaluators])
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
            raise SqlError(
                f"{position(node, self.plan.sql)}: aggregate function {name} is not allowed in "
                f"{self.refuse_aggregates}; aggregates go in SELECT and HAVING"
            )
        self.found_aggregate = True
        function: Aggregate | None = BUILTIN_AGGREGATES.get(name)
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
        if name in BUILTIN_AGGREGATES and name not in self.aggregates:
            self._check_builtin_aggregate(node, name, args)
        return aggregate_call(name, function, arguments)

    def _check_builtin_aggregate(self, node: exp.Expression, name: str, args: list[exp.Expression]) -> None:
        """Argument count, ``*`` and literal arguments of a built-in aggregate, when the rule is created."""
        where = position(node, self.plan.sql)
        if len(args) != ARITY[name]:
            raise SqlError(
                f"{where}: {name} takes {ARITY[name]} argument{'s' if ARITY[name] > 1 else ''}, got {len(args)}"
            )
        if isinstance(args[0], exp.Star) and name not in STAR_AGGREGATES:
            raise SqlError(f"{where}: {name}(*) is not allowed; name a column")
        if name in SECOND_ARGUMENT:
            value = _literal_values(args[1:])[0]
            wants_bool = name in ("deduplicate", "last_value")
            good = (
                isinstance(value, bool)
                if wants_bool
                else (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1)
            )
            if not good:
                raise SqlError(
                    f"{where}: the second argument of {name} must be {SECOND_ARGUMENT[name]}, got {args[1].sql()}"
                )


def _literal_values(args: list[exp.Expression]) -> list[Any]:
    """A call's arguments for an admission check: literal values, ``NOT_LITERAL`` for the others."""
    values: list[Any] = []
    for arg in args:
        if isinstance(arg, exp.Literal):
            values.append(arg.this if arg.is_string else _number(arg.this))
        elif isinstance(arg, exp.Neg) and isinstance(arg.this, exp.Literal) and not arg.this.is_string:
            values.append(-_number(arg.this.this))
        elif isinstance(arg, exp.Boolean):
            values.append(bool(arg.this))
        else:
            values.append(NOT_LITERAL)
    return values


def compile_query(
    plan: SelectPlan, resolve: FunctionResolver, rule_id: str = "", aggregates: frozenset[str] = frozenset()
) -> CompiledQuery:
    """Closures for ``plan``; ``rule_id`` is what ``rule_id()`` returns in this rule; ``aggregates`` names
    the portable functions whose IsAggregate is true."""
    compiler = _Compiler(plan, resolve, rule_id, aggregates)
    columns = [(p.name, compiler._alias(p.name, p.node)) for p in plan.projections]
    selects_aggregate = compiler.found_aggregate
    compiler.refuse_aggregates = "WHERE"
    where = compiler.compile(plan.where) if plan.where is not None else None
    query = CompiledQuery(
        stream=plan.stream,
        star=plan.star,
        columns=columns,
        where=where,
        batch_functions=compiler.batch_functions,
        scope=compiler.scope,
    )
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
    query.grouped = GroupedQuery(
        star=plan.star, columns=columns, keys=keys, having=having, order=order, aggregate=selects_aggregate
    )
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


def _column_parts(node: exp.Expression) -> Iterator[exp.Expression]:
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


def _nested(row: Any, parts: list[str]) -> Any:
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


def _binary(op: Callable[[Any, Any], Any], left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda row: op(left(row), right(row))


def _arithmetic(symbol: str, left: Evaluator, right: Evaluator) -> Evaluator:
    """Null on the left is null without evaluating the right (no function call for a null operand)."""
    compute = operators.arithmetic_of(symbol)

    def evaluate(row: Row) -> Any:
        a = left(row)
        return None if a is None else compute(a, right(row))

    return evaluate


def _equal(a: Any, b: Any) -> bool:
    """IN's equality: eKuiper's ``=``, except that values of different kinds are simply not equal."""
    try:
        return operators.compare("=", a, b)
    except operators.OperatorError:
        return False
