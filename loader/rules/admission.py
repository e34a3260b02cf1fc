"""Whether a rule can run: the checks REST makes before writing a rule file, from the manager's own parts.

The rule manager resolves a rule's symbols while it builds it
(loader/rules/reconciler.py); REST refuses a rule that could not start now
instead of writing a file that would wait.  Both use the same functions here
(``function_binding``, ``builtin_sink``) and the same readers
(``rule_from_json``, ``parse_select``, ``compile_query``), so the two cannot
drift apart.  The messages are eKuiper's where it says the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from loader.dataplane.sink import BUILTIN_SINKS, LogSink, NopSink
from loader.rules.aggregates import BUILTIN_AGGREGATES, WINDOW_RANGE_FUNCTIONS
from loader.rules.definitions import DefinitionError, RuleDef, StreamDef, rule_from_json
from loader.rules.functions import BUILTINS
from loader.rules.sql import SqlError, compile_query, parse_select

#: Which plugin provides a symbol: ``owner(kind, symbol)``, None when none does (``SymbolRegistry.owner``).
Owner = Callable[[str, str], "str | None"]


class RuleRefused(Exception):
    """A rule that cannot run now; ``code`` is the loader's word for why, ``message`` eKuiper's sentence."""

    code = "invalid_rule"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRule(RuleRefused):
    """The rule JSON does not match schema/rule.schema.json (or a sink option is wrong)."""


class InvalidSql(RuleRefused):
    """The SQL is not a SELECT of the subset the loader runs."""

    code = "invalid_sql"


class Unavailable(RuleRefused):
    """Something the rule uses is not there: a function, its stream, its source or a sink (``kind``)."""

    code = "unavailable"

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class Binding(StrEnum):
    """How a function a rule calls is provided."""

    WINDOW = "window"  # eKuiper's aggregates and window_start/window_end: evaluated by the window
    PORTABLE = "portable"  # a loaded plugin provides it (it shadows a built-in of the same name)
    BUILTIN = "builtin"
    MISSING = "missing"


def function_binding(name: str, owner: Owner) -> Binding:
    if name in BUILTIN_AGGREGATES or name in WINDOW_RANGE_FUNCTIONS:
        return Binding.WINDOW
    if owner("functions", name) is not None:
        return Binding.PORTABLE
    return Binding.BUILTIN if name in BUILTINS else Binding.MISSING


def builtin_sink(symbol: str, owner: Owner) -> type[LogSink] | type[NopSink] | None:
    """The built-in sink (``log``, ``nop``) a rule's action gets, unless a plugin provides the symbol."""
    if owner("sinks", symbol) is not None:
        return None
    return BUILTIN_SINKS.get(symbol)


def check_rule(body: Any, streams: Mapping[str, StreamDef], owner: Owner) -> RuleDef:
    """Everything a rule needs, checked now: a ``RuleRefused`` rather than a rule that waits."""
    if not isinstance(body, dict):
        raise InvalidRule('invalid rule json: the body must be a JSON object {"id", "sql", "actions": [...]}')
    try:
        rule = rule_from_json(body, "request body")
    except DefinitionError as exc:
        raise InvalidRule(f"invalid rule json: {exc}") from None
    if not rule.sql.lstrip()[:6].upper() == "SELECT":
        raise InvalidSql(f"invalid rule json: SQL {rule.sql} is not a select statement.")
    try:
        plan = parse_select(rule.sql)
    except SqlError as exc:
        raise InvalidSql(_sql_error(rule.sql, str(exc))) from None
    except Exception as exc:  # e.g. a tokenizer error: still the client's SQL, not our fault
        raise InvalidSql(_sql_error(rule.sql, f"cannot parse the SQL: {exc}")) from None
    for name, _args in plan.functions:  # eKuiper's parser knows its functions: checked before the stream
        if function_binding(name, owner) == Binding.MISSING:
            raise Unavailable(_sql_error(rule.sql, f"function {name} not found"), "function")
    stream = streams.get(plan.stream)
    if stream is None:
        raise Unavailable(f"fail to get stream {plan.stream}, please check if stream is created", "stream")
    if owner("sources", stream.type) is None:
        raise Unavailable(
            f"stream {plan.stream} reads source {stream.type}, which no loaded plugin "
            "provides; install one that does (POST /plugins/portables)",
            "source",
        )
    for action in rule.actions:
        if owner("sinks", action.sink) is None and builtin_sink(action.sink, owner) is None:
            raise Unavailable(f"sink {action.sink} is not defined", "sink")
    try:
        compile_query(plan, lambda name, index: _noop)
    except SqlError as exc:
        raise InvalidSql(_sql_error(rule.sql, str(exc))) from None
    except Exception as exc:
        raise InvalidSql(_sql_error(rule.sql, f"the SQL cannot be compiled: {exc}")) from None
    return rule


def _noop(args: list[Any]) -> None:
    return None


def _sql_error(sql: str, problem: str) -> str:
    """eKuiper's sentence for SQL it cannot use: ``invalid rule json: Parse SQL <sql> error: <problem>.``"""
    return f"invalid rule json: Parse SQL {sql} error: {problem.rstrip('.')}."
