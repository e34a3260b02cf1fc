"""eKuiper's string functions, with eKuiper's null rules.

Null in: most give null; ``concat`` skips null arguments; ``startswith``,
``endswith`` and ``regexp_matches`` give false; ``indexof`` gives -1;
``length`` and ``numbytes`` give 0.  Non-string arguments are used as their
text.  Regular expressions are Python's ``re`` (eKuiper uses Go's RE2
syntax; the common subset is the same).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from loader.rules.functions.math_functions import round_half_away
from loader.rules.functions.registry import NOT_LITERAL, NULL_HANDLED, NULL_IF_FIRST, Builtin, table
from loader.rules.functions.values import FunctionError, to_float, to_int, to_text


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FunctionError(f"invalid regular expression {pattern!r}: {exc}") from None


def _concat(args: list[Any]) -> Any:
    return "".join(to_text(a) for a in args if a is not None)


def _endswith(args: list[Any]) -> Any:
    return args[0] is not None and args[1] is not None and to_text(args[0]).endswith(to_text(args[1]))


def _startswith(args: list[Any]) -> Any:
    return args[0] is not None and args[1] is not None and to_text(args[0]).startswith(to_text(args[1]))


def _indexof(args: list[Any]) -> Any:
    if args[0] is None or args[1] is None:
        return -1
    return to_text(args[0]).find(to_text(args[1]))


def _length(args: list[Any]) -> Any:
    value = args[0]
    if isinstance(value, (list, dict)):
        return len(value)
    return len(to_text(value))


def _numbytes(args: list[Any]) -> Any:
    return len(to_text(args[0]).encode("utf-8"))


def _pad(left: bool) -> Callable[[list[Any]], Any]:
    def body(args: list[Any]) -> Any:
        count = to_int(args[1], "the padding length")
        padding = " " * max(count, 0)
        text = to_text(args[0])
        return padding + text if left else text + padding

    return body


def _regexp_matches(args: list[Any]) -> Any:
    if args[0] is None or args[1] is None:
        return False
    return _regex(to_text(args[1])).search(to_text(args[0])) is not None


def _regexp_replace(args: list[Any]) -> Any:
    replacement = re.sub(r"\$(\d+|\{\d+\})", lambda m: "\\g<" + m.group(1).strip("{}") + ">", to_text(args[2]))
    return _regex(to_text(args[1])).sub(replacement, to_text(args[0]))


def _regexp_substr(args: list[Any]) -> Any:
    found = _regex(to_text(args[1])).search(to_text(args[0]))
    return found.group(0) if found else ""


def _substring(args: list[Any]) -> Any:
    """substring(s, start[, end]): characters start (inclusive) to end (exclusive), 0-based, as eKuiper computes."""
    text = to_text(args[0])
    start = to_int(args[1], "substring's start")
    if start < 0:
        raise FunctionError("substring's start must not be negative")
    if len(args) == 2 or args[2] is None:
        return text[start:]
    end = to_int(args[2], "substring's end")
    if end < 0:
        raise FunctionError("substring's end must not be negative")
    if start > end:
        raise FunctionError(f"substring's start ({start}) must not be greater than its end ({end})")
    return text[start:end]


def _split_value(args: list[Any]) -> Any:
    if args[0] is None or args[1] is None:
        return None
    parts = to_text(args[0]).split(to_text(args[1]))
    index = to_int(args[2], "split_value's index")
    if not 0 <= index < len(parts):
        raise FunctionError(f"split_value: index {index} is out of range ({len(parts)} parts)")
    return parts[index]


def _format(args: list[Any]) -> Any:
    """format(x, d): x rounded to d decimals, with thousands separators: format(12332.1234, 2) = '12,332.12'."""
    value = to_float(args[0], "format's number")
    digits = max(to_int(args[1], "format's decimals"), 0)
    return f"{round_half_away(value, digits):,.{digits}f}"


def _reverse(args: list[Any]) -> Any:
    return to_text(args[0])[::-1]


def _one_text(name: str, fn: Callable[[str], str]) -> Builtin:
    return Builtin(name, lambda args: fn(to_text(args[0])), 1, 1, NULL_IF_FIRST)


def _literal_positive_index(position: int, what: str) -> Callable[[list[Any]], str | None]:
    def check(literals: list[Any]) -> str | None:
        value = literals[position] if position < len(literals) else NOT_LITERAL
        if value is not NOT_LITERAL and isinstance(value, int) and value < 0:
            return f"{what} must not be negative, got {value}"
        return None

    return check


STRING = table(
    Builtin("concat", _concat, 1, None, NULL_HANDLED),
    Builtin("endswith", _endswith, 2, 2, NULL_HANDLED),
    Builtin("startswith", _startswith, 2, 2, NULL_HANDLED),
    Builtin("indexof", _indexof, 2, 2, NULL_HANDLED),
    Builtin("length", lambda args: 0 if args[0] is None else _length(args), 1, 1, NULL_HANDLED),
    Builtin("numbytes", lambda args: 0 if args[0] is None else _numbytes(args), 1, 1, NULL_HANDLED),
    _one_text("lower", str.lower),
    _one_text("upper", str.upper),
    _one_text("trim", str.strip),
    _one_text("ltrim", str.lstrip),
    _one_text("rtrim", str.rstrip),
    Builtin("lpad", _pad(True), 2, 2, NULL_IF_FIRST),
    Builtin("rpad", _pad(False), 2, 2, NULL_IF_FIRST),
    Builtin("regexp_matches", _regexp_matches, 2, 2, NULL_HANDLED),
    Builtin("regexp_replace", _regexp_replace, 3, 3),
    Builtin("regexp_substr", _regexp_substr, 2, 2),
    Builtin("substring", _substring, 2, 3, NULL_IF_FIRST, _literal_positive_index(1, "substring's start")),
    Builtin("split_value", _split_value, 3, 3, NULL_HANDLED, _literal_positive_index(2, "split_value's index")),
    Builtin("format", _format, 2, 3),
    Builtin("reverse", _reverse, 1, 1, NULL_IF_FIRST),
    aliases={"regexp_substring": "regexp_substr"},
)
