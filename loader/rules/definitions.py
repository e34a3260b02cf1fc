"""Stream and rule definitions, in eKuiper's formats.

A stream file is ``{"sql": "CREATE STREAM demo () WITH (TYPE=\\"counter\\", ...)"}``;
a rule file is ``{"id", "sql", "actions": [{"<sink type>": {props}}], "options", "triggered"}``.
``triggered: false`` (as in eKuiper) keeps a rule defined but stopped, which
is how a stopped rule stays stopped across loader restarts.

``CREATE STREAM`` is eKuiper's own DDL, not SQL any general parser knows, so
it gets a small dedicated reader here; the SELECT of a rule goes through the
real SQL parser in ``sql/parse.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from loader.dataplane.sink_options import SinkOptionError, sink_options
from loader.jsonschemas import load_schema
from loader.names import is_valid_name


class DefinitionError(Exception):
    """A stream or rule definition that cannot be used; the message names the field and the fix."""


@dataclass(frozen=True)
class StreamDef:
    name: str
    sql: str
    type: str
    datasource: str = ""
    conf_key: str = "default"
    format: str = "json"
    shared: bool = False
    fields: str = ""
    #: The field holding a record's event time (ms since the epoch), used when a rule sets isEventTime.
    timestamp: str = ""


@dataclass(frozen=True)
class Action:
    sink: str
    props: dict[str, Any]


@dataclass(frozen=True)
class RuleDef:
    id: str
    sql: str
    actions: tuple[Action, ...]
    options: dict[str, Any] = field(default_factory=dict)
    triggered: bool = True


_CREATE = re.compile(r"^\s*CREATE\s+STREAM\s+([A-Za-z0-9_-]+)\s*", re.IGNORECASE)
_OPTION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\"[^\"]*\"|'[^']*'|[^,\s)]+)\s*(,|$)")


def _balanced(text: str, start: int) -> tuple[str, int]:
    """The text inside the parenthesis opening at ``start`` and the index after it."""
    if start >= len(text) or text[start] != "(":
        raise DefinitionError(f"expected '(' at character {start + 1} of the stream SQL")
    depth = 0
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1 : index], index + 1
    raise DefinitionError("unbalanced parentheses in the stream SQL")


def parse_stream(sql: str) -> StreamDef:
    """Read ``CREATE STREAM name (fields) WITH (KEY="value", ...)``."""
    match = _CREATE.match(sql)
    if not match:
        raise DefinitionError(
            "the stream SQL must start with CREATE STREAM <name>, e.g. "
            'CREATE STREAM demo () WITH (TYPE="counter", DATASOURCE="t1")'
        )
    name = match.group(1)
    if not is_valid_name(name):
        raise DefinitionError(f"stream name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-'")
    fields, index = _balanced(sql, match.end())
    rest = sql[index:].lstrip()
    if not rest.upper().startswith("WITH"):
        raise DefinitionError('the stream SQL needs WITH (TYPE="<source symbol>", ...) after the field list')
    options_text, end = _balanced(rest, rest.index("(", 4) if "(" in rest else len(rest))
    if rest[end:].strip().rstrip(";").strip():
        raise DefinitionError(f"unexpected text after WITH (...): {rest[end:].strip()!r}")
    options = _options(options_text)
    if "TYPE" not in options:
        raise DefinitionError('the stream has no TYPE: add TYPE="<source symbol>" to its WITH options')
    for key in ("FORMAT", "SHARED"):
        if key in options:
            options[key] = options[key].lower()
    _check_with_options(options)
    return StreamDef(
        name=name,
        sql=sql,
        type=options["TYPE"],
        datasource=options.get("DATASOURCE", ""),
        conf_key=options.get("CONF_KEY", "default"),
        format=options.get("FORMAT", "json"),
        shared=options.get("SHARED", "false") == "true",
        fields=fields.strip(),
        timestamp=options.get("TIMESTAMP", ""),
    )


def _options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    position = 0
    while position < len(text.strip()):
        match = _OPTION.match(text, position)
        if not match:
            raise DefinitionError(
                f"cannot read the WITH options from {text[position:].strip()!r}: "
                'write KEY="value" pairs separated by commas'
            )
        value = match.group(2)
        if value[:1] in "\"'":
            value = value[1:-1]
        options[match.group(1).upper()] = value
        position = match.end()
    return options


def stream_from_json(data: Any, where: str) -> StreamDef:
    _validate(data, "stream.schema.json", where)
    try:
        return parse_stream(data["sql"])
    except DefinitionError as exc:
        raise DefinitionError(f"{where} at /sql: {exc}") from None


def rule_from_json(data: Any, where: str) -> RuleDef:
    _validate(data, "rule.schema.json", where)
    actions = tuple(Action(sink, dict(props or {})) for action in data["actions"] for sink, props in action.items())
    for index, action in enumerate(actions):
        try:
            sink_options(action.props)
        except SinkOptionError as exc:
            raise DefinitionError(f"{where} at /actions/{index}/{action.sink}: {exc}") from None
    return RuleDef(
        id=data["id"],
        sql=data["sql"],
        actions=actions,
        options=dict(data.get("options") or {}),
        triggered=data.get("triggered", True),
    )


def rule_to_json(rule: RuleDef) -> dict[str, Any]:
    return {
        "id": rule.id,
        "sql": rule.sql,
        "actions": [{a.sink: a.props} for a in rule.actions],
        "options": rule.options,
        "triggered": rule.triggered,
    }


def _check_with_options(options: dict[str, str]) -> None:
    """The WITH options against ``stream.schema.json#/$defs/with``: types and allowed values, before use."""
    validator = jsonschema.Draft202012Validator(load_schema("stream.schema.json")["$defs"]["with"])
    for error in sorted(validator.iter_errors(options), key=lambda e: list(e.absolute_path)):
        key = "/".join(str(p) for p in error.absolute_path)
        raise DefinitionError(f"WITH option {key}: {error.message}; see schema/stream.schema.json")


def _validate(data: Any, schema: str, where: str) -> None:
    """``data`` against a shipped schema, before anything uses it: the first fault, with its JSON pointer.

    The one admission check of stream and rule definitions: files on disk and
    REST bodies both come through ``stream_from_json`` / ``rule_from_json``.
    """
    validator = jsonschema.Draft202012Validator(load_schema(schema))
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        pointer = "/" + "/".join(str(p) for p in error.absolute_path)
        raise DefinitionError(f"{where} at {pointer}: {error.message}; see schema/{schema}")
