"""A checked ``SelectPlan`` compiled into a ``CompiledQuery`` of closures, with the rule's functions bound.

Expressions are compiled once into nested Python closures over a record
(``dict``), so evaluating a rule per record does no tree walking.  The
values follow eKuiper's rules (loader/rules/operators.py): null
comparisons, integer arithmetic staying integer, and a record whose
evaluation fails (mixed kinds, division by zero) failing alone.

Each function call is resolved here (a portable function or a built-in,
aggregates apart), its literal arguments checked, and a call site that can
take batches made to take part in ``apply_many`` (loader/rules/sql/evaluate.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlglot import exp

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
from loader.rules.sql.dialect import SqlError, describe, position, unsupported
from loader.rules.sql.evaluate import BatchFunction, BatchScope, CompiledQuery, Deferred
from loader.rules.sql.parse import SPECIAL_FORMS, SelectPlan, column_parts, function_call, meta_path

#: Given a function name (lower case) and the call's index in the rule, return
#: a callable taking the evaluated argument list, or None if unknown.
FunctionResolver = Callable[[str, int], Callable[[list[Any]], Any] | None]


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
        self.scope = BatchScope()
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
        name, args = function_call(node)
        if name in SPECIAL_FORMS:  # meta(key); mqtt(topic) is eKuiper's meta for MQTT sources
            return self._meta(node)
        if name:
            return self._call(node, name, args)
        raise unsupported(node, self.plan.sql, describe(node))

    def _column(self, node: exp.Expression) -> Evaluator:
        parts = [p.name for p in reversed(list(column_parts(node)))]
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
        steps = [p.name for p in reversed(list(column_parts(node.expression)))]
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
        path = meta_path(node.expressions[0]) or []
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
            raise Deferred

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
