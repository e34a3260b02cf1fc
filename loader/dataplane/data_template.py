"""A sink action's ``dataTemplate``: the part of Go's text/template that eKuiper's templates use most.

eKuiper renders a sink's data through a Go template before it is encoded
(docs/rules.md, "Sink messages").  The loader implements this subset, and
refuses anything else when the rule is admitted, naming the construct, so a
template never half-works:

- text outside ``{{ }}`` is copied; ``{{-`` and ``-}}`` trim the white space
  next to them; ``{{/* comments */}}`` print nothing;
- ``{{.}}`` the data, ``{{.a}}``, ``{{.a.b}}`` a key of it (of a key);
- ``{{index X 0}}``, ``{{index X 0 "k"}}``: an element of a list, a key of an object;
- ``{{json X}}`` and sprig's ``{{toJson X}}``: compact JSON of X;
- ``X`` is one of the above, a string or integer literal, or ``( ... )``.

Values print as Go prints them: strings bare, ``3.0`` as ``3``, a missing
key as ``<no value>``, null as ``<nil>``.  Control structures (``if``,
``range``, ...), variables, pipes and other functions are not supported.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sdk.protocol.jsonenc import dumps_strict

SUPPORTED = (
    '{{.}}, {{.field}}, {{.a.b}}, {{index X 0}}, {{index X 0 "key"}}, {{json X}}, {{toJson X}}, {{/* comment */}}'
)
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil"}
_FUNCTIONS = {"index", "json", "toJson"}
_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)"""  # "string" or `raw string`
    r"""|(?P<num>-?\d+(?![\w.]))"""  # an integer
    r"""|(?P<field>\.(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?)"""  # . or .a.b
    r"""|(?P<paren>[()])|(?P<word>[A-Za-z_]\w*)|(?P<other>\S+))"""
)


class TemplateError(ValueError):
    """A template the loader cannot run: the text names the construct and what is supported."""


class TemplateRunError(ValueError):
    """The template does not fit the data of one message (the message is dropped, the error counted)."""


class _Missing:
    """A key the data does not have: Go prints ``<no value>``."""


MISSING = _Missing()


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]  # () is the data itself


@dataclass(frozen=True)
class _Call:
    func: str
    args: tuple[Any, ...]


class DataTemplate:
    """A parsed template; ``render(data)`` gives its text for one message's data."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts = _parse(text)

    def render(self, data: Any) -> str:
        out: list[str] = []
        for part in self._parts:
            out.append(part if isinstance(part, str) else _print(_evaluate(part, data)))
        return "".join(out)


def _parse(text: str) -> list[Any]:
    """Literal text and action expressions, in order; TemplateError for anything outside the subset."""
    parts: list[Any] = []
    position, trim_next = 0, False
    while True:
        start = text.find("{{", position)
        chunk = text[position:] if start < 0 else text[position:start]
        if trim_next:
            chunk = chunk.lstrip()
        if start < 0:
            parts.append(chunk)
            return [p for p in parts if p != ""]
        end = text.find("}}", start + 2)
        if end < 0:
            raise TemplateError(f"unclosed action at character {start + 1}: every {{{{ needs its }}}}")
        inner = text[start + 2 : end]
        if inner.startswith("- ") or inner == "-":
            chunk, inner = chunk.rstrip(), inner[1:]
        trim_next = inner.endswith(" -") or inner == "-"
        if trim_next:
            inner = inner[:-1]
        parts.append(chunk)
        stripped = inner.strip()
        if not (stripped.startswith("/*") and stripped.endswith("*/")):
            parts.append(_expression(stripped, "{{" + text[start + 2 : end] + "}}"))
        position = end + 2


def _expression(source: str, action: str) -> Any:
    tokens = _tokens(source, action)
    if not tokens:
        raise TemplateError(f"{action}: an empty action; supported: {SUPPORTED}")
    node, rest = _command(tokens, action)
    if rest:
        raise TemplateError(f"{action}: unexpected {rest[0][1]!r}; supported: {SUPPORTED}")
    return node


def _tokens(source: str, action: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "other"
        value = match.group(kind)
        if kind == "other":
            raise TemplateError(_unsupported(value, action))
        if kind == "word" and value not in _FUNCTIONS:
            raise TemplateError(_unsupported(value, action))
        tokens.append((kind, value))
    return tokens


def _unsupported(value: str, action: str) -> str:
    if value in _KEYWORDS:
        what = f"{{{{{value}}}}} (control structures)"
    elif value.startswith("$"):
        what = f"the variable {value}"
    elif value.startswith("|"):
        what = "the pipe |"
    elif re.fullmatch(r"[A-Za-z_]\w*", value):
        what = f"the function {value}"
    else:
        what = repr(value)
    return f"{action}: {what} is not supported by the loader; supported: {SUPPORTED}"


def _command(tokens: list[tuple[str, str]], action: str) -> tuple[Any, list[tuple[str, str]]]:
    """One operand, or a function and its operands up to a closing parenthesis or the end."""
    kind, value = tokens[0]
    if kind != "word":
        return _operand(tokens, action)
    args: list[Any] = []
    rest = tokens[1:]
    while rest and rest[0] != ("paren", ")"):
        arg, rest = _operand(rest, action)
        args.append(arg)
    _check_arity(value, len(args), action)
    return _Call(value, tuple(args)), rest


def _operand(tokens: list[tuple[str, str]], action: str) -> tuple[Any, list[tuple[str, str]]]:
    kind, value = tokens[0]
    rest = tokens[1:]
    if kind == "field":
        return _Field(tuple(value.split(".")[1:]) if value != "." else ()), rest
    if kind == "num":
        return _Literal(int(value)), rest
    if kind == "str":
        return _Literal(value[1:-1] if value[0] == "`" else json.loads(value)), rest
    if kind == "word":
        raise TemplateError(
            f"{action}: the function {value} needs parentheses when it is an argument, e.g. {{{{json ({value} ...)}}}}"
        )
    if value == "(" and rest:
        node, rest = _command(rest, action)
        if rest and rest[0] == ("paren", ")"):
            return node, rest[1:]
    raise TemplateError(f"{action}: unbalanced parentheses")


def _check_arity(func: str, count: int, action: str) -> None:
    if func in ("json", "toJson") and count != 1:
        raise TemplateError(f"{action}: {func} takes exactly 1 argument, got {count}")
    if func == "index" and count < 1:
        raise TemplateError(f"{action}: index needs the value to index, e.g. {{{{index . 0}}}}")


def _evaluate(node: Any, data: Any) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Field):
        value = data
        for name in node.path:
            value = _key(value, name, f".{'.'.join(node.path)}")
        return value
    values = [_evaluate(arg, data) for arg in node.args]
    if node.func == "index":
        return _index(values[0], values[1:])
    return dumps_strict(None if values[0] is MISSING else values[0])


def _key(value: Any, name: str, where: str) -> Any:
    if isinstance(value, dict):
        return value.get(name, MISSING)
    if isinstance(value, list):
        raise TemplateRunError(
            f"{where}: the data is an array of rows here (sendSingle is false); "
            f'use {{{{index . 0 "{name}"}}}} or set sendSingle: true'
        )
    raise TemplateRunError(f"{where}: cannot read key {name!r} of {_kind(value)}")


def _index(value: Any, keys: list[Any]) -> Any:
    for key in keys:
        if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
            if not -1 < key < len(value):
                raise TemplateRunError(f"index {key} out of range: the array has {len(value)} elements")
            value = value[key]
        elif isinstance(value, dict) and isinstance(key, str):
            value = value.get(key, MISSING)
        else:
            raise TemplateRunError(f"index: cannot index {_kind(value)} with {json.dumps(key)}")
    return value


def _kind(value: Any) -> str:
    if value is MISSING:
        return "a missing value"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _print(value: Any) -> str:
    """``value`` as Go's fmt prints it in a template (``%v``)."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_print(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_print(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    """Shortest digits; exponent form below 1e-4 and from 1e21 on, as Go's %v."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    digits = Decimal(repr(value)).normalize()
    sign, numerals, exponent = digits.as_tuple()
    assert isinstance(exponent, int)
    leading = len(numerals) + exponent - 1
    if -4 <= leading < 21:
        return format(digits, "f")
    mantissa = "".join(map(str, numerals))
    mantissa = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if leading >= 0 else '-'}{abs(leading):02d}"
