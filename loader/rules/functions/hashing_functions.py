"""eKuiper's hashing functions: the hex digest of the argument's text (UTF-8); null gives null."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import Any

from loader.rules.functions.registry import Builtin, table
from loader.rules.functions.values import to_text


def _digest(name: str, algorithm: Callable[[bytes], Any]) -> Builtin:
    return Builtin(name, lambda args: algorithm(to_text(args[0]).encode("utf-8")).hexdigest(), 1, 1)


def _crc32(args: list[Any]) -> Any:
    """The IEEE CRC-32 of the text, as lower-case hex without leading zeros (Go's %x of a uint32)."""
    return format(zlib.crc32(to_text(args[0]).encode("utf-8")), "x")


HASHING = table(
    _digest("md5", hashlib.md5),
    _digest("sha1", hashlib.sha1),
    _digest("sha256", hashlib.sha256),
    _digest("sha384", hashlib.sha384),
    _digest("sha512", hashlib.sha512),
    Builtin("crc32", _crc32, 1, 1),
)
