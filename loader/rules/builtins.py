"""Built-in SQL functions, used when no loaded plugin provides a function of that name.

Portable function symbols take precedence: a plugin providing ``upper``
replaces the built-in for every rule created after it is loaded.  Each
built-in takes the evaluated argument list; NULL in gives NULL out.
"""

from __future__ import annotations

import math
from typing import Any, Callable


def _unary(fn: Callable[[Any], Any]) -> Callable[[list], Any]:
    def call(args: list) -> Any:
        if len(args) != 1:
            raise ValueError(f"expects 1 argument, got {len(args)}")
        return None if args[0] is None else fn(args[0])

    return call


def _round(args: list) -> Any:
    if not 1 <= len(args) <= 2:
        raise ValueError(f"expects 1 or 2 arguments, got {len(args)}")
    if args[0] is None:
        return None
    return round(args[0], int(args[1])) if len(args) == 2 else round(args[0])


def _concat(args: list) -> Any:
    return None if any(a is None for a in args) else "".join(str(a) for a in args)


def _coalesce(args: list) -> Any:
    return next((a for a in args if a is not None), None)


def _substring(args: list) -> Any:
    if not 2 <= len(args) <= 3:
        raise ValueError(f"expects 2 or 3 arguments, got {len(args)}")
    text, start = args[0], int(args[1])
    if text is None:
        return None
    end = start + int(args[2]) if len(args) == 3 else None
    return str(text)[start:end]


BUILTINS: dict[str, Callable[[list], Any]] = {
    "abs": _unary(abs),
    "ceil": _unary(math.ceil),
    "floor": _unary(math.floor),
    "sqrt": _unary(math.sqrt),
    "round": _round,
    "lower": _unary(lambda s: str(s).lower()),
    "upper": _unary(lambda s: str(s).upper()),
    "trim": _unary(lambda s: str(s).strip()),
    "length": _unary(lambda s: len(s)),
    "concat": _concat,
    "coalesce": _coalesce,
    "substring": _substring,
}
