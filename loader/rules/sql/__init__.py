"""The rule SQL subset: parse with sqlglot, check the subset, compile to closures.

Supported: ``SELECT`` with ``*`` (and extra fields), columns, nested fields
(``a.b.c``, ``a->b``), ``a[i]`` and ``a[i:j]``, aliases (usable in WHERE),
literals, arithmetic and bitwise operators, comparisons, ``AND``/``OR``/``NOT``,
``IS [NOT] NULL``, ``IN``, ``BETWEEN``, ``LIKE``, ``CASE``, ``meta(key)`` and
function calls; ``FROM`` one stream; ``WHERE``.  Anything else is rejected
when the rule is created, naming the construct and its line and column.
docs/rules.md has the table against eKuiper's SQL.

One concept per module:

- ``dialect``: eKuiper's lexical rules and plain function calls on sqlglot;
  positions (``line L, column C``), ``SqlError`` and constructs in the
  user's words.
- ``parse``: a statement into a ``SelectPlan``, checked against the subset.
- ``compile``: a ``SelectPlan`` into a ``CompiledQuery`` of closures, its
  functions bound.
- ``evaluate``: ``CompiledQuery``, run per record or per batch with batched
  function calls.

``parse`` imports ``dialect``; ``compile`` imports the other three;
``dialect`` and ``evaluate`` import none of them.  Callers import the
names below from the package.
"""

from __future__ import annotations

from loader.rules.sql.compile import compile_query, literal_arguments
from loader.rules.sql.dialect import SqlError
from loader.rules.sql.evaluate import CompiledQuery
from loader.rules.sql.parse import SelectPlan, call_position, parse_select

__all__ = [
    "CompiledQuery",
    "SelectPlan",
    "SqlError",
    "call_position",
    "compile_query",
    "literal_arguments",
    "parse_select",
]
