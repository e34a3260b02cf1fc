"""eKuiper's rule SQL: parse with sqlglot, check the subset, compile to closures.

The names the rest of the loader uses, re-exported from the module that
defines each.
"""

from __future__ import annotations

from loader.rules.sql.compile import (
    CompiledQuery,
    SelectPlan,
    SqlError,
    call_position,
    compile_query,
    literal_arguments,
    parse_select,
)

__all__ = [
    "CompiledQuery",
    "SelectPlan",
    "SqlError",
    "call_position",
    "compile_query",
    "literal_arguments",
    "parse_select",
]
