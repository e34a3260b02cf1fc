"""eKuiper's JSON functions: to_json, parse_json and the json_path_* family (see jsonpath.py).

The value searched may be an object or array, or a JSON text, which is read first.
"""

from __future__ import annotations

import json
from typing import Any

from loader.rules.functions.jsonpath import compile_path, dumps
from loader.rules.functions.registry import NOT_LITERAL, NULL_HANDLED, Builtin, table
from loader.rules.functions.values import FunctionError


def _document(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise FunctionError(f"the value to search is text that is not JSON: {value[:80]!r}") from None
    return value


def _path(value: Any) -> str:
    if not isinstance(value, str):
        raise FunctionError('a JSON path is a string such as "$.a.b"')
    return value


def _query(args: list[Any]) -> Any:
    return compile_path(_path(args[1])).query(_document(args[0]))


def _query_first(args: list[Any]) -> Any:
    path = compile_path(_path(args[1]))
    found = path.query(_document(args[0]))
    if path.definite:
        return found
    return found[0] if found else None


def _exists(args: list[Any]) -> Any:
    if args[0] is None:
        return False
    try:
        found = compile_path(_path(args[1])).query(_document(args[0]))
    except FunctionError:
        return False
    return bool(found) if isinstance(found, list) else found is not None


def _check_path(literals: list[Any]) -> str | None:
    path = literals[1]
    if path is NOT_LITERAL:
        return None
    if not isinstance(path, str):
        return 'a JSON path is a string such as "$.a.b"'
    try:
        compile_path(path)
    except FunctionError as exc:
        return str(exc)
    return None


def _to_json(args: list[Any]) -> Any:
    return "null" if args[0] is None else dumps(args[0])


def _parse_json(args: list[Any]) -> Any:
    text = args[0]
    if text is None or text == "null":
        return None
    if not isinstance(text, str):
        raise FunctionError("parse_json reads a string")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FunctionError(f"parse_json: not JSON: {exc}") from None


JSON = table(
    Builtin("to_json", _to_json, 1, 1, NULL_HANDLED),
    Builtin("parse_json", _parse_json, 1, 1, NULL_HANDLED),
    Builtin("json_path_query", _query, 2, 2, check_literals=_check_path),
    Builtin("json_path_query_first", _query_first, 2, 2, check_literals=_check_path),
    Builtin("json_path_exists", _exists, 2, 2, NULL_HANDLED, _check_path),
)
