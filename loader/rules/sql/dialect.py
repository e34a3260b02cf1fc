"""eKuiper's SQL as sqlglot reads it, and how the rule SQL speaks of a statement's parts.

Parsing, checking and compiling all need these, so they sit below all three:
the dialect (``"..."`` is a string, as in eKuiper; a function call is read
as written, never as another SQL's special form), where a node is in the
statement (``line L, column C``), ``SqlError`` that every refusal raises, and
a construct's name in the user's words.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp, parser, tokens
from sqlglot.dialects.dialect import Dialect

from loader.rules.window_syntax import AGGREGATE_NAMES, WindowSyntaxParser

SUPPORTED = (
    "SELECT columns, * (with extra fields), nested a.b and a->b, a[i] and a[i:j], aliases, literals, "
    "arithmetic and & | ^, comparisons, AND/OR/NOT, CASE, IS NULL, IN, BETWEEN, LIKE, meta(key) and function "
    "calls, FROM one stream, WHERE, GROUP BY a window and fields, HAVING, ORDER BY, aggregate functions; "
    "see docs/rules.md"
)


class SqlError(Exception):
    """A rule's SQL is outside the subset or malformed; says where and what."""


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
