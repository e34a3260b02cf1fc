"""eKuiper's mathematical functions.

Results follow eKuiper's types: ``abs`` keeps an integer integer, ``sign``
and the bitwise functions give integers, everything else (``ceil``,
``floor``, ``round`` included) gives a float.  A math domain error (``sqrt(-1)``,
``acos(2)``) gives null, as eKuiper's NaN check does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from loader.rules.functions.registry import Builtin, table
from loader.rules.functions.values import FunctionError, finite, is_int, to_float, to_int


def _float1(name: str, fn: Callable[[float], float]) -> Builtin:
    def body(args: list[Any]) -> Any:
        try:
            return finite(float(fn(to_float(args[0], f"{name}'s argument"))))
        except (ValueError, OverflowError) as exc:
            if isinstance(exc, FunctionError):
                raise
            return None

    return Builtin(name, body, 1, 1)


def _float2(name: str, fn: Callable[[float, float], float]) -> Builtin:
    def body(args: list[Any]) -> Any:
        a = to_float(args[0], f"{name}'s first argument")
        b = to_float(args[1], f"{name}'s second argument")
        try:
            return finite(fn(a, b))
        except (ValueError, OverflowError, ZeroDivisionError):
            return None

    return Builtin(name, body, 2, 2)


def _int2(name: str, fn: Callable[[int, int], int]) -> Builtin:
    def body(args: list[Any]) -> Any:
        return fn(to_int(args[0], f"{name}'s first argument"), to_int(args[1], f"{name}'s second argument"))

    return Builtin(name, body, 2, 2)


def _abs(args: list[Any]) -> Any:
    value = args[0]
    return abs(value) if is_int(value) else abs(to_float(value, "abs's argument"))


def round_half_away(value: float, digits: int = 0) -> float:
    """Go's math.Round: halves away from zero (Python's round() rounds halves to even)."""
    scale = 10.0**digits
    scaled = abs(value) * scale
    rounded = math.floor(scaled + 0.5) / scale
    return math.copysign(rounded, value)


def _round(args: list[Any]) -> Any:
    value = to_float(args[0], "round's argument")
    digits = to_int(args[1], "round's decimals") if len(args) > 1 else 0
    return round_half_away(value, digits)


def _sign(args: list[Any]) -> Any:
    value = to_float(args[0], "sign's argument")
    return 1 if value > 0 else -1 if value < 0 else 0


def _log(args: list[Any]) -> Any:
    if len(args) == 1:
        x, base = to_float(args[0], "log's argument"), 10.0
    else:
        base, x = to_float(args[0], "log's base"), to_float(args[1], "log's argument")
    if x <= 0 or base <= 0 or base == 1:
        return None
    return math.log(x) / math.log(base) if base != 10.0 else math.log10(x)


def _cot(x: float) -> float:
    return 1 / math.tan(x)


def _mod(a: float, b: float) -> float:
    return math.fmod(a, b)


def _bitnot(args: list[Any]) -> Any:
    return ~to_int(args[0], "bitnot's argument")


def _rand(args: list[Any]) -> Any:
    return random.random()


def _pi(args: list[Any]) -> Any:
    return math.pi


def _conv(args: list[Any]) -> Any:
    """conv(value, from_base, to_base): a number's text in one base as text in another (bases 2..36)."""
    text = str(args[0]).strip().lower()
    source, target = to_int(args[1], "conv's from_base"), to_int(args[2], "conv's to_base")
    if not (2 <= abs(source) <= 36 and 2 <= abs(target) <= 36):
        raise FunctionError("conv's bases must be between 2 and 36")
    try:
        number = int(text, abs(source))
    except ValueError:
        raise FunctionError(f"conv: {args[0]!r} is not a number in base {abs(source)}") from None
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    negative, number = number < 0, abs(number)
    out = ""
    while True:
        number, rest = divmod(number, abs(target))
        out = digits[rest] + out
        if number == 0:
            break
    return ("-" if negative else "") + out.upper()


MATH = table(
    Builtin("abs", _abs, 1, 1),
    _float1("acos", math.acos),
    _float1("asin", math.asin),
    _float1("atan", math.atan),
    _float2("atan2", math.atan2),
    _int2("bitand", lambda a, b: a & b),
    _int2("bitor", lambda a, b: a | b),
    _int2("bitxor", lambda a, b: a ^ b),
    Builtin("bitnot", _bitnot, 1, 1),
    _float1("ceil", math.ceil),
    _float1("floor", math.floor),
    Builtin("conv", _conv, 3, 3),
    _float1("cos", math.cos),
    _float1("cosh", math.cosh),
    _float1("cot", _cot),
    _float1("degrees", math.degrees),
    _float1("radians", math.radians),
    _float1("exp", math.exp),
    _float1("ln", math.log),
    Builtin("log", _log, 1, 2),
    _float2("mod", _mod),
    _float2("power", math.pow),
    Builtin("pi", _pi, 0, 0),
    Builtin("rand", _rand, 0, 0),
    Builtin("round", _round, 1, 2),
    Builtin("sign", _sign, 1, 1),
    _float1("sin", math.sin),
    _float1("sinh", math.sinh),
    _float1("sqrt", math.sqrt),
    _float1("tan", math.tan),
    _float1("tanh", math.tanh),
    aliases={"ceiling": "ceil", "pow": "power"},
)
