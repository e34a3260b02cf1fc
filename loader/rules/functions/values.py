"""Value rules shared by the built-in functions and the SQL operators, as eKuiper has them.

eKuiper's values are JSON's plus a datetime.  Here a datetime is a
``DateTime``: a ``str`` (its RFC 3339 text, which is what eKuiper writes for a
datetime in JSON) that also carries the ``datetime``, so a result holding one
encodes as JSON without any conversion pass.

Numbers: a ``bool`` is never a number (Python makes it an ``int``; eKuiper
does not), and integer stays integer where eKuiper's does.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, TypeGuard

UTC = _dt.UTC


class FunctionError(ValueError):
    """A call that cannot produce a value for this record (eKuiper: the record fails, the rule goes on)."""


class DateTime(str):
    """eKuiper's datetime: its RFC 3339 text, with ``moment`` the aware ``datetime`` itself."""

    moment: _dt.datetime

    def __new__(cls, moment: _dt.datetime) -> DateTime:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
        if text.endswith("+00:00"):
            text = text[:-6] + "Z"
        value = super().__new__(cls, text)
        value.moment = moment
        return value


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def to_float(value: Any, what: str) -> float:
    """A number as float; anything else is refused (eKuiper converts same-kind values only)."""
    if is_number(value):
        return float(value)
    raise FunctionError(f"{what} must be a number, got {type_name(value)} {value!r}")


def to_int(value: Any, what: str) -> int:
    """An integer (or a float without a fraction, as eKuiper's strict int cast accepts)."""
    if is_int(value):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise FunctionError(f"{what} must be an integer, got {type_name(value)} {value!r}")


def to_text(value: Any) -> str:
    """Any value as text, as eKuiper's ToStringAlways: JSON-ish for numbers and booleans, "" for null."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (dict, list)):
        from loader.rules.functions.jsonpath import dumps  # one JSON writer for to_json and text

        return dumps(value)
    return str(value)


def format_float(value: float) -> str:
    """A float as Go's strconv 'g'-style shortest text: 2.5, 3, 1e+21."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def type_name(value: Any) -> str:
    """The eKuiper type name of a value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "float"
    if isinstance(value, DateTime):
        return "datetime"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "struct"
    return type(value).__name__


def finite(value: float) -> float | None:
    """NaN (a math domain error) is null, as eKuiper returns it."""
    return None if math.isnan(value) else value
