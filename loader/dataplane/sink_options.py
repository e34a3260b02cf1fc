"""What a sink receives: eKuiper's common sink action properties, and the messages they make of a rule's results.

eKuiper sends a sink each result of a rule (an *emission*: the rows of one
result, see loader/rules/pipeline.py) as one message, a JSON array of rows,
or, with ``sendSingle: true``, each row as its own message (a JSON object).
Before encoding it applies, in eKuiper's order, ``omitIfEmpty``, then
``dataTemplate``, then ``dataField``, ``fields`` or ``excludeFields``
(docs/rules.md, "Sink messages").  The properties are checked when a rule is
admitted (``sink_options`` raises SinkOptionError naming the property and
the fix); every action property, these included, also reaches the sink's
``configure`` unchanged, as in eKuiper.

Messages are made here, pure and unencoded: the caller encodes them (a
plain message, or a line of a batch) and counts rows for the metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from loader.dataplane.data_template import DataTemplate, TemplateError, TemplateRunError

#: eKuiper's sink ``format`` values; the loader encodes only json.
EKUIPER_FORMATS = ("json", "protobuf", "binary", "custom", "delimited")
#: eKuiper's default sink bufferLength.
DEFAULT_BUFFER_LENGTH = 1024


class SinkOptionError(ValueError):
    """A common sink property the loader cannot honour: the text names it and the fix."""


@dataclass(frozen=True)
class SinkOptions:
    send_single: bool = False
    omit_if_empty: bool = False
    template: DataTemplate | None = None
    data_field: str = ""
    fields: tuple[str, ...] = ()
    exclude_fields: tuple[str, ...] = ()
    buffer_length: int = DEFAULT_BUFFER_LENGTH

    @property
    def plain(self) -> bool:
        """Each emission goes out as it is: no template, no selection."""
        return self.template is None and not (self.data_field or self.fields or self.exclude_fields)


@dataclass(frozen=True)
class Message:
    """One message for a sink: the JSON value to send and how many rows of the rule's results it carries."""

    value: Any
    rows: int


def sink_options(props: dict[str, Any]) -> SinkOptions:
    """The common properties of one sink action, checked; SinkOptionError for the first bad one."""
    fmt = props.get("format", "json")
    if fmt in ("", None):
        fmt = "json"
    if fmt != "json":
        if fmt in EKUIPER_FORMATS:
            raise SinkOptionError(
                f"format {fmt!r} is not supported by the loader: portable sinks get json; "
                'remove format or set it to "json"'
            )
        raise SinkOptionError(
            f"format {fmt!r} is not a sink format (eKuiper's are {', '.join(EKUIPER_FORMATS)}); "
            'the loader supports "json"'
        )
    _refuse_set(props, "compression", "encryption")
    for key in ("batchSize", "lingerInterval"):
        if props.get(key) not in (None, 0, "", "0", "0s"):
            raise SinkOptionError(
                f"{key} is not supported by the loader (eKuiper would then send several "
                f"results per message); remove {key}"
            )
    fields, exclude = _strings(props, "fields"), _strings(props, "excludeFields")
    if fields and exclude:
        raise SinkOptionError("fields and excludeFields cannot both be set: keep one")
    buffer_length = _number(props, "bufferLength", DEFAULT_BUFFER_LENGTH)
    if buffer_length <= 0:
        raise SinkOptionError(f"bufferLength must be a positive integer, got {buffer_length}")
    return SinkOptions(
        send_single=_flag(props, "sendSingle"),
        omit_if_empty=_flag(props, "omitIfEmpty"),
        template=_template(props),
        data_field=_string(props, "dataField"),
        fields=fields,
        exclude_fields=exclude,
        buffer_length=buffer_length,
    )


def _flag(props: dict[str, Any], key: str) -> bool:
    value = props.get(key, False)
    if not isinstance(value, bool):
        raise SinkOptionError(f"{key} must be true or false, got {json.dumps(value)}")
    return value


def _number(props: dict[str, Any], key: str, default: int) -> int:
    value = props.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SinkOptionError(f"{key} must be an integer, got {json.dumps(value)}")
    return value


def _string(props: dict[str, Any], key: str) -> str:
    value = props.get(key, "")
    if not isinstance(value, str):
        raise SinkOptionError(f"{key} must be a string, got {json.dumps(value)}")
    return value


def _strings(props: dict[str, Any], key: str) -> tuple[str, ...]:
    value = props.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SinkOptionError(f"{key} must be a list of field names (strings), got {json.dumps(value)}")
    return tuple(value)


def _refuse_set(props: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if props.get(key) not in (None, ""):
            raise SinkOptionError(f"{key} is not supported by the loader (portable sinks get plain JSON); remove {key}")


def _template(props: dict[str, Any]) -> DataTemplate | None:
    text = _string(props, "dataTemplate")
    if not text:
        return None
    try:
        return DataTemplate(text)
    except TemplateError as exc:
        raise SinkOptionError(f"dataTemplate: {exc}") from None


# ------------------------------------------------------------------ messages


def messages(emissions: list[list[dict[str, Any]]], options: SinkOptions) -> tuple[list[Message], list[str]]:
    """The messages for a sink, in order, and the errors of results that could not become one.

    A result whose template or field selection fails is left out and its
    error reported, as eKuiper drops it and counts an error.
    """
    out: list[Message] = []
    errors: list[str] = []
    if options.plain and not options.omit_if_empty:  # the common case, kept cheap
        if options.send_single:
            out = [Message(row, 1) for emission in emissions for row in emission]
        else:
            out = [Message(emission, len(emission)) for emission in emissions]
        return out, errors
    for emission in emissions:
        if options.omit_if_empty and not emission:
            continue
        units = [[row] for row in emission] if options.send_single else [emission]
        for unit in units:
            data: Any = unit[0] if options.send_single else unit
            if options.send_single and options.omit_if_empty and not data:
                continue
            try:
                value = _transform(data, options)
            except TemplateRunError as exc:
                errors.append(f"dataTemplate: {exc}")
                continue
            except SinkOptionError as exc:
                errors.append(str(exc))
                continue
            if value is not _DROP:
                out.append(Message(value, len(unit)))
    return out, errors


_DROP = object()


def _transform(data: Any, options: SinkOptions) -> Any:
    """eKuiper's order: the template, then dataField, then fields or excludeFields."""
    if options.template is not None:
        text = options.template.render(data)
        try:
            data = json.loads(text)
        except ValueError:
            raise SinkOptionError(
                f"dataTemplate made {text[:200]!r}, which is not JSON (format json needs the template to write JSON)"
            ) from None
    if options.data_field:
        if isinstance(data, dict):
            data = data.get(options.data_field)
        elif isinstance(data, list):
            if not data:
                return _DROP
            first = data[0]
            data = first.get(options.data_field) if isinstance(first, dict) else None
        else:
            raise SinkOptionError(f"dataField {options.data_field!r}: the data is not an object or array")
    if options.fields or options.exclude_fields:
        data = _select(data, options)
    return data


def _select(data: Any, options: SinkOptions) -> Any:
    if isinstance(data, dict):
        return _select_one(data, options)
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return [_select_one(item, options) for item in data]
    raise SinkOptionError(f"fields/excludeFields need an object or an array of objects, got {json.dumps(data)[:100]}")


def _select_one(row: dict[str, Any], options: SinkOptions) -> dict[str, Any]:
    if options.fields:
        return {name: row.get(name) for name in options.fields}
    return {k: v for k, v in row.items() if k not in options.exclude_fields}
