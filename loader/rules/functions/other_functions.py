"""eKuiper's other functions: coalesce, isnull, newuuid, cardinality, rule_id.

``meta(key)`` is not here: its argument names source metadata rather than
a value, so the SQL compiler reads it itself (loader/rules/sql/compile.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from loader.rules.functions.registry import NULL_HANDLED, Builtin, RuleScoped, table


def _coalesce(args: list[Any]) -> Any:
    return next((a for a in args if a is not None), None)


def _isnull(args: list[Any]) -> Any:
    return args[0] is None


def _newuuid(args: list[Any]) -> Any:
    return str(uuid.uuid4())


def _cardinality(args: list[Any]) -> Any:
    return len(args[0]) if isinstance(args[0], list) else 0


def _rule_id(rule_id: str) -> Builtin:
    return Builtin("rule_id", lambda args: rule_id, 0, 0, NULL_HANDLED)


OTHER = table(
    Builtin("coalesce", _coalesce, 1, None, NULL_HANDLED),
    Builtin("isnull", _isnull, 1, 1, NULL_HANDLED),
    Builtin("newuuid", _newuuid, 0, 0),
    Builtin("cardinality", _cardinality, 1, 1, NULL_HANDLED),
    RuleScoped("rule_id", _rule_id),
)
