"""Bounded JSON loading: the one way the loader parses JSON it did not write.

Stream and rule files, plugin manifests, symbol configuration, control
messages and source records all come from outside.  Any of them can be
nested deep enough to exhaust the parser's recursion (50,000 ``[`` are 50 kB):
Python's ``json`` then raises ``RecursionError``, which is not a
``ValueError`` and used to escape every handler.  ``loads`` refuses anything
nested deeper than ``MAX_DEPTH`` with a ``JsonError`` (a ``ValueError``) that
says so, and never lets ``RecursionError`` out.

The fast path is orjson, which enforces the same depth limit itself (1024),
so the check costs nothing on ordinary records.  Python's json reads what
orjson refuses: NaN and Infinity (Python plugins' ``json.dumps`` writes them)
and integers of 19 digits or more (orjson would turn those into floats).

NaN and Infinity become ``None``: they are not JSON, and passed on they make
the JSON log and sink payloads unreadable to strict parsers.  ``strict=True``
refuses them instead (for input where a user should be told).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency; plain json still works
    orjson = None  # type: ignore[assignment]

#: Deepest nesting accepted, the same as orjson's own limit.
MAX_DEPTH = 1024

#: orjson turns integers beyond 64 bits into floats, silently; any run of
#: 19 digits or more takes Python's json, which keeps them exact.
_long_number_bytes = re.compile(rb"\d{19}").search
_long_number_text = re.compile(r"\d{19}").search
_STRING_BYTES = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STRING_TEXT = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonError(ValueError):
    """Input that is not JSON the loader accepts; the message says what is wrong and where."""


def loads(data: str | bytes, strict: bool = False) -> Any:
    """Parse ``data``; JsonError if it is not JSON or is nested deeper than MAX_DEPTH.

    NaN and Infinity become None, or a JsonError with ``strict``.
    """
    long = _long_number_bytes(data) if isinstance(data, bytes) else _long_number_text(data)
    if orjson is not None and long is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # Python's json reads NaN and Infinity, and words the error better
    depth = _nesting_depth(data)
    if depth > MAX_DEPTH:
        raise JsonError(f"nested {depth} levels deep, more than the {MAX_DEPTH} accepted; flatten the data")
    constant = _refuse if strict else _null
    try:
        return json.loads(data, parse_constant=constant, parse_float=_finite_float(strict))
    except json.JSONDecodeError as exc:
        raise JsonError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # the depth check above makes this unlikely; never let it out
        raise JsonError(f"nested too deep to read (the limit is {MAX_DEPTH} levels); flatten the data") from None
    except (ValueError, TypeError) as exc:
        raise JsonError(str(exc)) from None


def _nesting_depth(data: str | bytes) -> int:
    """Deepest ``[``/``{`` nesting outside strings, exact beyond MAX_DEPTH.

    Up to MAX_DEPTH it is the count of opening brackets (an upper bound), so
    ordinary input costs two ``count`` calls.
    """
    opening = data.count(b"[") + data.count(b"{") if isinstance(data, bytes) else data.count("[") + data.count("{")
    if opening <= MAX_DEPTH:
        return opening
    if isinstance(data, bytes):
        steps = [_STEP.get(b, 0) for b in _STRING_BYTES.sub(b"", data) if b in _STEP]
    else:
        steps = [_STEP.get(ord(c), 0) for c in _STRING_TEXT.sub("", data) if ord(c) in _STEP]
    return max(accumulate(steps), default=0)


def _null(constant: str) -> None:
    return None


def _refuse(constant: str) -> Any:
    raise JsonError(f"{constant} is not valid JSON; use null or a number")


def _finite_float(strict: bool) -> Callable[[str], float | None]:
    def parse(text: str) -> float | None:
        value = float(text)
        if math.isfinite(value):
            return value
        if strict:
            raise JsonError(f"{text} is out of the range of a number")
        return None

    return parse
