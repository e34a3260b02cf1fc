"""The two compact JSON encoders the messages are written with, each one reused C encoder.

``json.dumps`` builds a new encoder per call, which costs more than encoding
a small record; at 30,000 records/s every microsecond is about 3% of the
budget.  Both give the output of ``json.dumps(obj, separators=(",", ":"))``
without its circular-reference check (records come from JSON; a cycle still
fails, with RecursionError).

- ``compact`` (plugin side) writes NaN and Infinity as Python's json does,
  as eKuiper's Python SDK would;
- ``dumps_strict`` (host side) writes them as null, so every peer gets strict
  JSON (a rule's arithmetic can still make one, 1e308 * 10), at no cost when
  there are none.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any

#: The C accelerator of json's encoder; CPython always has it, other interpreters may not.
c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (for encoding strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _not_json(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


if c_make_encoder is not None:
    _lenient = c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, True)
    _strict = c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, False)

    def compact(obj: Any) -> bytes:
        """Compact JSON bytes of ``obj``; NaN and Infinity as Python's json writes them."""
        return "".join(_lenient(obj, 0)).encode()

    def dumps_strict(obj: Any) -> str:
        """Compact JSON text of ``obj``; NaN and Infinity become null."""
        try:
            return "".join(_strict(obj, 0))
        except ValueError:
            return "".join(_strict(finite(obj), 0))
else:  # pragma: no cover
    _lenient_encode = json.JSONEncoder(separators=(",", ":")).encode
    _strict_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

    def compact(obj: Any) -> bytes:
        return _lenient_encode(obj).encode()

    def dumps_strict(obj: Any) -> str:
        try:
            return _strict_encode(obj)
        except ValueError:
            return _strict_encode(finite(obj))
