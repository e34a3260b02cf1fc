"""A small JSONPath (Goessner's syntax, as eKuiper's json_path_* functions read it), no dependency.

Supported: ``$``, ``.key``, ``['key']`` / ``["key"]``, ``[n]`` (negative
from the end), ``[*]`` and ``.*``, slices ``[a:b]``, recursive ``..key``,
and filters ``[? @.age > 30]`` / ``[?(@.age > 30 && @.last == 'Craig')]``
comparing ``@``-paths with literals (numbers, strings, true, false, null)
by ``== != < <= > >=``, joined by ``&&`` / ``||``, or testing a path exists.

A path of keys and indexes only is *definite*: its result is the one value
it names, and a missing key is an error.  Any wildcard, slice, filter or
recursive step makes the result the list of every match (maybe empty).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from loader.rules.functions.values import FunctionError


class JsonPathError(FunctionError):
    """The path is malformed, or names something the value does not have."""


def dumps(value: Any) -> str:
    """Compact JSON, as eKuiper's to_json writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


Step = Callable[[Any], Iterator[Any]]


@dataclass(frozen=True)
class Path:
    steps: tuple[Step, ...]
    definite: bool

    def query(self, value: Any) -> Any:
        matches = [value]
        for step in self.steps:
            matches = [found for current in matches for found in step(current)]
        if self.definite:
            if not matches:
                raise JsonPathError("the path names nothing in the value (unknown key or index out of range)")
            return matches[0]
        return matches


_MISSING = object()


def _key(name: str) -> Step:
    def step(value: Any) -> Iterator[Any]:
        if isinstance(value, dict) and name in value:
            yield value[name]

    return step


def _index(position: int) -> Step:
    def step(value: Any) -> Iterator[Any]:
        if isinstance(value, list) and -len(value) <= position < len(value):
            yield value[position]

    return step


def _wildcard(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from value.values()
    elif isinstance(value, list):
        yield from value


def _slice(start: int | None, end: int | None) -> Step:
    def step(value: Any) -> Iterator[Any]:
        if isinstance(value, list):
            yield from value[start:end]

    return step


def _descendants(value: Any) -> Iterator[Any]:
    yield value
    for child in _wildcard(value):
        yield from _descendants(child)


def _recursive(inner: Step) -> Step:
    def step(value: Any) -> Iterator[Any]:
        for node in _descendants(value):
            yield from inner(node)

    return step


def _filter(condition: Callable[[Any], bool]) -> Step:
    def step(value: Any) -> Iterator[Any]:
        for item in _wildcard(value):
            if condition(item):
                yield item

    return step


class _Reader:
    """Reads a path text left to right; every error names the character where it went wrong."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, what: str) -> JsonPathError:
        return JsonPathError(f"JSON path {self.text!r}: {what} at character {self.at + 1}")

    def peek(self, count: int = 1) -> str:
        return self.text[self.at : self.at + count]

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.at += 1

    def take(self, pattern: str) -> str | None:
        found = re.compile(pattern).match(self.text, self.at)
        if found is None:
            return None
        self.at = found.end()
        return found.group(0)

    def expect(self, literal: str) -> None:
        self.skip_spaces()
        if self.peek(len(literal)) != literal:
            raise self.fail(f"expected {literal!r}")
        self.at += len(literal)

    def steps(self, relative: bool) -> tuple[list[Step], bool]:
        steps: list[Step] = []
        definite = True
        while self.at < len(self.text):
            if relative and self.peek() not in (".", "["):
                break
            if self.peek(2) == "..":
                self.at += 2
                inner = _wildcard if self.take(r"\*") else _key(self.name())
                steps.append(_recursive(inner))
                definite = False
            elif self.peek() == ".":
                self.at += 1
                if self.take(r"\*"):
                    steps.append(_wildcard)
                    definite = False
                else:
                    steps.append(_key(self.name()))
            elif self.peek() == "[":
                self.at += 1
                step, exact = self.bracket()
                steps.append(step)
                definite = definite and exact
            else:
                raise self.fail("expected '.' or '['")
        return steps, definite

    def name(self) -> str:
        found = self.take(r"[^.\[\]\s()=!<>&|]+")
        if not found:
            raise self.fail("expected a key")
        return found

    def bracket(self) -> tuple[Step, bool]:
        self.skip_spaces()
        if self.peek() == "?":
            self.at += 1
            self.skip_spaces()
            wrapped = self.peek() == "("
            if wrapped:
                self.at += 1
            condition = self.condition()
            if wrapped:
                self.expect(")")
            self.expect("]")
            return _filter(condition), False
        if self.take(r"\*"):
            self.expect("]")
            return _wildcard, False
        quoted = self.string()
        if quoted is not None:
            self.expect("]")
            return _key(quoted), True
        number = self.take(r"-?\d*\s*:\s*-?\d*|-?\d+")
        if not number:
            raise self.fail("expected an index, a slice, a quoted key, '*' or a '?' filter")
        self.expect("]")
        if ":" in number:
            low, high = (part.strip() for part in number.split(":", 1))
            return _slice(int(low) if low else None, int(high) if high else None), False
        return _index(int(number)), True

    def string(self) -> str | None:
        quote = self.peek()
        if quote not in ("'", '"'):
            return None
        end = self.text.find(quote, self.at + 1)
        if end < 0:
            raise self.fail("unterminated string")
        value = self.text[self.at + 1 : end]
        self.at = end + 1
        return value

    def condition(self) -> Callable[[Any], bool]:
        left = self.conjunction()
        self.skip_spaces()
        while self.peek(2) == "||":
            self.at += 2
            left = _either(left, self.conjunction())
            self.skip_spaces()
        return left

    def conjunction(self) -> Callable[[Any], bool]:
        left = self.comparison()
        self.skip_spaces()
        while self.peek(2) == "&&":
            self.at += 2
            left = _both(left, self.comparison())
            self.skip_spaces()
        return left

    def comparison(self) -> Callable[[Any], bool]:
        left = self.operand()
        self.skip_spaces()
        operator = self.take(r"==|!=|<=|>=|<|>")
        if operator is None:
            return lambda item: left(item) is not _MISSING
        right = self.operand()
        return lambda item: _compare(operator, left(item), right(item))

    def operand(self) -> Callable[[Any], Any]:
        self.skip_spaces()
        if self.peek() == "@":
            self.at += 1
            steps, _ = self.steps(relative=True)
            path = Path(tuple(steps), definite=False)
            return lambda item: found[0] if (found := path.query(item)) else _MISSING
        quoted = self.string()
        if quoted is not None:
            return lambda item: quoted
        literal = self.take(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null")
        if literal is None:
            raise self.fail("expected @.path or a literal")
        value = json.loads(literal)
        return lambda item: value


def _either(a: Callable[[Any], bool], b: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda item: a(item) or b(item)


def _both(a: Callable[[Any], bool], b: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda item: a(item) and b(item)


def _compare(operator: str, left: Any, right: Any) -> bool:
    if left is _MISSING or right is _MISSING:
        return False
    if operator == "==":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    try:
        return bool({"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator])
    except TypeError:
        return False


@lru_cache(maxsize=256)
def compile_path(text: str) -> Path:
    reader = _Reader(text.strip())
    if not reader.take(r"\$"):
        raise reader.fail("a JSON path starts with '$'")
    steps, definite = reader.steps(relative=False)
    return Path(tuple(steps), definite)
