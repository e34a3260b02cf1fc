"""eKuiper's transform (conversion) functions: cast, encode/decode, chr, hex2dec/dec2hex, trunc.

``cast(x, "bigint" | "float" | "string" | "boolean" | "datetime")`` uses
eKuiper's type names; the type must be a string literal, checked when the
rule is created.  ``bytea`` (raw bytes) has no JSON form here and is refused
there, saying so.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import math
from typing import Any

from loader.rules.functions.registry import NOT_LITERAL, Builtin, table
from loader.rules.functions.values import UTC, DateTime, FunctionError, is_int, is_number, to_int, to_text, type_name

CAST_TYPES = ("bigint", "float", "string", "boolean", "datetime")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def to_datetime(value: Any) -> DateTime:
    """eKuiper's cast to datetime: numbers are milliseconds since the epoch, text is RFC 3339 / ISO 8601."""
    if isinstance(value, DateTime):
        return value
    if is_number(value):
        return DateTime(_dt.datetime.fromtimestamp(value / 1000, UTC))
    if isinstance(value, str):
        try:
            return DateTime(_dt.datetime.fromisoformat(value.strip()))
        except ValueError:
            raise FunctionError(
                f"cannot read {value!r} as a datetime: use RFC 3339, e.g. "
                "2006-01-02T15:04:05.000Z, or milliseconds since the epoch"
            ) from None
    raise FunctionError(f"cannot convert {type_name(value)} {value!r} to datetime")


def _to_bigint(value: Any) -> int:
    if isinstance(value, bool):
        return 1 if value else 0
    if is_int(value):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FunctionError(f"cannot convert {value} to bigint")
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise FunctionError(f"cannot convert string {value!r} to bigint") from None
    raise FunctionError(f"cannot convert {type_name(value)} to bigint")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise FunctionError(f"cannot convert string {value!r} to float") from None
    raise FunctionError(f"cannot convert {type_name(value)} to float")


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if is_number(value):
        return value != 0
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise FunctionError(f"cannot convert string {value!r} to boolean")
    raise FunctionError(f"cannot convert {type_name(value)} to boolean")


_CASTS = {"bigint": _to_bigint, "float": _to_float, "string": to_text, "boolean": _to_boolean, "datetime": to_datetime}


def _cast(args: list[Any]) -> Any:
    convert = _CASTS.get(args[1]) if isinstance(args[1], str) else None
    if convert is None:
        raise FunctionError(f"cast: unknown type {args[1]!r}; use one of {', '.join(CAST_TYPES)}")
    return convert(args[0])


def _check_cast(literals: list[Any]) -> str | None:
    kind = literals[1]
    if kind is NOT_LITERAL or not isinstance(kind, str):
        names = ", ".join(CAST_TYPES)
        return f'cast\'s second argument must be a type name in quotes, e.g. cast(x, "bigint"); one of {names}'
    if kind == "bytea":
        return 'cast to "bytea" is not supported yet (raw bytes have no JSON form in rules)'
    if kind not in CAST_TYPES:
        return f"cast: unknown type {kind!r}; use one of {', '.join(CAST_TYPES)}"
    return None


def _check_base64(literals: list[Any]) -> str | None:
    scheme = literals[1]
    if scheme is not NOT_LITERAL and (not isinstance(scheme, str) or scheme.lower() != "base64"):
        return f'only the "base64" encoding is supported, got {scheme!r}'
    return None


def _encode(args: list[Any]) -> Any:
    if str(args[1]).lower() != "base64":
        raise FunctionError("only the base64 encoding is supported")
    if not isinstance(args[0], str):
        raise FunctionError(f"only a string can be encoded, got {type_name(args[0])}")
    return base64.b64encode(args[0].encode("utf-8")).decode("ascii")


def _decode(args: list[Any]) -> Any:
    if str(args[1]).lower() != "base64":
        raise FunctionError("only the base64 encoding is supported")
    if not isinstance(args[0], str):
        raise FunctionError(f"only a string can be decoded, got {type_name(args[0])}")
    try:
        raw = base64.b64decode(args[0], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FunctionError(f"cannot decode base64 text: {exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FunctionError("the decoded bytes are not UTF-8 text (raw bytes have no JSON form in rules)") from None


def _chr(args: list[Any]) -> Any:
    value = args[0]
    if isinstance(value, str):
        if len(value) != 1:
            raise FunctionError(f"chr takes a code or a single character, got {value!r}")
        return value
    code = to_int(value, "chr's argument") if not isinstance(value, float) else int(value)
    try:
        return chr(code)
    except (ValueError, OverflowError):
        raise FunctionError(f"chr: {code} is not a character code") from None


def _hex2dec(args: list[Any]) -> Any:
    text = str(args[0]).strip()
    digits = text[2:] if text.lower().startswith("0x") else text
    try:
        return int(digits, 16)
    except ValueError:
        raise FunctionError(f"hex2dec: {text!r} is not a hexadecimal number") from None


def _dec2hex(args: list[Any]) -> Any:
    number = to_int(args[0], "dec2hex's argument")
    return ("-0x" if number < 0 else "0x") + format(abs(number), "x")


def _trunc(args: list[Any]) -> Any:
    value = args[0]
    if not is_number(value):
        raise FunctionError(f"trunc's first argument must be a number, got {type_name(value)}")
    digits = min(max(to_int(args[1], "trunc's decimals"), 0), 34)
    scale = 10**digits
    return math.trunc(float(value) * scale) / scale


CONVERSION = table(
    Builtin("cast", _cast, 2, 2, check_literals=_check_cast),
    Builtin("encode", _encode, 2, 2, check_literals=_check_base64),
    Builtin("decode", _decode, 2, 2, check_literals=_check_base64),
    Builtin("chr", _chr, 1, 1),
    Builtin("hex2dec", _hex2dec, 1, 1),
    Builtin("dec2hex", _dec2hex, 1, 1),
    Builtin("trunc", _trunc, 2, 2),
)
