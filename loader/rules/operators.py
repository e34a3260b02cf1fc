"""eKuiper's operators on values: comparison, arithmetic, bitwise, logic, LIKE, index and slice.

Pure functions of values, used by the SQL compiler (sql/compile.py).  The rules are
eKuiper's evaluator's:

- Comparing with null: ``=``, ``<=``, ``>=`` are true only when both sides
  are null, ``!=`` is true unless both are, ``<`` and ``>`` are false.  So
  ``WHERE a != 1`` passes a record without ``a``, as in eKuiper.
- Arithmetic with null is null.  Integer with integer stays integer:
  ``7 / 2`` is 3 and ``-7 / 2`` is -3 (truncating, as Go does), ``%`` keeps
  the dividend's sign; with a float involved the result is a float.
  Dividing by zero fails the record.
- Values of different kinds (a string and a number, a boolean and a
  number) cannot be compared or combined: that fails the record, naming
  both values, as eKuiper's "invalid operation" does.
- ``AND`` / ``OR``: false AND anything is false, true OR anything is true;
  otherwise a null side gives null; a non-boolean fails the record.
"""

from __future__ import annotations

import math
import operator as _op
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from loader.rules.functions.values import DateTime, FunctionError, is_int, is_number, to_int, type_name


class OperatorError(FunctionError):
    """An operator applied to values it does not take; the record fails, the rule goes on."""


def _invalid(left: Any, op: str, right: Any) -> OperatorError:
    return OperatorError(f"invalid operation {type_name(left)}({left!r}) {op} {type_name(right)}({right!r})")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    if isinstance(value, DateTime):
        return "datetime"
    if isinstance(value, str):
        return "string"
    return "other"


_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "=": _op.eq,
    "!=": _op.ne,
    "<": _op.lt,
    "<=": _op.le,
    ">": _op.gt,
    ">=": _op.ge,
}


def comparator(op: str) -> Callable[[Any, Any], bool]:
    """``compare`` for one operator, with a fast path for two numbers or two strings (the common case)."""
    direct = _ORDER[op]

    def compare_values(left: Any, right: Any) -> bool:
        kind_left, kind_right = type(left), type(right)
        if (
            (kind_left is int or kind_left is float)
            and (kind_right is int or kind_right is float)
            or kind_left is str
            and kind_right is str
        ):
            return bool(direct(left, right))
        return compare(op, left, right)

    return compare_values


def compare(op: str, left: Any, right: Any) -> bool:
    """``left op right`` for op in = != < <= > >=, with eKuiper's null rules."""
    if left is None or right is None:
        both = left is None and right is None
        if op in ("=", "<=", ">="):
            return both
        if op == "!=":
            return not both
        return False
    kind = _kind(left)
    if kind != _kind(right) or kind == "other" and op not in ("=", "!="):
        if {kind, _kind(right)} <= {"datetime", "string"}:
            kind = "string"
        else:
            raise _invalid(left, op, right)
    if kind == "bool" and op not in ("=", "!="):
        raise _invalid(left, op, right)
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


_FLOAT_OPS: dict[str, Callable[[Any, Any], Any]] = {"+": _op.add, "-": _op.sub, "*": _op.mul}


def arithmetic_of(op: str) -> Callable[[Any, Any], Any]:
    """``arithmetic`` for one operator, with a fast path for + - * on two ints or on floats."""
    if op in ("/", "%"):
        floor = _op.floordiv if op == "/" else _op.mod

        def divide(left: Any, right: Any) -> Any:
            if type(left) is int and type(right) is int and left >= 0 and right > 0:
                return floor(left, right)  # Go's truncation and Python's floor agree here
            return arithmetic(op, left, right)

        return divide
    direct = _FLOAT_OPS.get(op)
    if direct is None:
        return lambda left, right: arithmetic(op, left, right)

    def compute(left: Any, right: Any) -> Any:
        kind_left, kind_right = type(left), type(right)
        if (kind_left is int or kind_left is float) and (kind_right is int or kind_right is float):
            return direct(left, right)
        return arithmetic(op, left, right)

    return compute


def arithmetic(op: str, left: Any, right: Any) -> Any:
    """``left op right`` for op in + - * / % & | ^; null on either side gives null."""
    if left is None or right is None:
        return None
    if isinstance(left, bool) and isinstance(right, bool) and op in ("&", "|", "^"):
        return {"&": left and right, "|": left or right, "^": left != right}[op]
    if not (is_number(left) and is_number(right)):
        raise _invalid(left, op, right)
    if is_int(left) and is_int(right):
        return _integer(op, left, right)
    if op in ("&", "|", "^"):
        raise _invalid(left, op, right)
    a, b = float(left), float(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise OperatorError("divided by zero")
    return a / b if op == "/" else math.fmod(a, b)


def _integer(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "&":
        return a & b
    if op == "|":
        return a | b
    if op == "^":
        return a ^ b
    if b == 0:
        raise OperatorError("divided by zero")
    quotient = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        quotient = -quotient
    return quotient if op == "/" else a - b * quotient


def negate(value: Any) -> Any:
    if value is None:
        return None
    if not is_number(value):
        raise OperatorError(f"invalid operation -{type_name(value)}({value!r})")
    return -value


def and_rest(left: Any, right: Any) -> Any:
    """``left AND right`` once ``left`` is known not to be false (false AND anything is false, unevaluated)."""
    if left is None or right is None:
        return None
    if not isinstance(left, bool) or not isinstance(right, bool):
        raise _invalid(left, "AND", right)
    return right


def or_rest(left: Any, right: Any) -> Any:
    """``left OR right`` once ``left`` is known not to be true (true OR anything is true, unevaluated)."""
    if left is None or right is None:
        return None
    if not isinstance(left, bool) or not isinstance(right, bool):
        raise _invalid(left, "OR", right)
    return right


def logical_not(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise OperatorError(f"invalid operation NOT {type_name(value)}({value!r})")
    return not value


@lru_cache(maxsize=256)
def _like_pattern(pattern: str) -> re.Pattern[str]:
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


def like(value: Any, pattern: Any) -> Any:
    """``value LIKE pattern``: ``%`` any run, ``_`` one character, ``\\`` escapes; null gives null."""
    if value is None or pattern is None:
        return None
    if not isinstance(value, str) or not isinstance(pattern, str):
        raise _invalid(value, "LIKE", pattern)
    return _like_pattern(pattern).fullmatch(value) is not None


def index(value: Any, position: Any) -> Any:
    """``value[position]``: 0-based, negative from the end; out of range fails the record, as in eKuiper."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise OperatorError(f"[{position}] applies to an array, got {type_name(value)}")
    at = to_int(position, "an array index")
    if at < 0:
        at += len(value)
    if not 0 <= at < len(value):
        raise OperatorError(f"index {position} is out of range for an array of {len(value)}")
    return value[at]


def slice_of(value: Any, start: Any, end: Any) -> Any:
    """``value[start:end]`` (end excluded; either may be left out, negatives count from the end), as eKuiper."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise OperatorError(f"[{start}:{end}] applies to an array, got {type_name(value)}")
    size = len(value)
    low = 0 if start is None else to_int(start, "a slice start")
    high = size if end is None else to_int(end, "a slice end")
    if low < 0:
        low += size
    if high < 0:
        high += size
    if low < 0 or low > size or high < 0 or high > size:
        raise OperatorError(f"slice [{start}:{end}] is out of range for an array of {size}")
    if low > high:
        raise OperatorError(f"slice [{start}:{end}]: the start is after the end")
    return value[low:high]
