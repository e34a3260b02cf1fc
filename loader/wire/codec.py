"""Every JSON payload of the data channels, encoded and decoded in one place,
plus the exceptions the three data channels share.

These run once per record, so they are plain ``json.loads`` and a reused C
JSON encoder, with no validation layer and no per-message objects beyond one
small tuple: at 30,000 records/s every microsecond is about 3% of the budget.
The control channel's ``{"cmd", "arg"}`` lives in ``control.py``.

Shapes (see docs/protocol.md):

- source, plugin -> host: ``{"message": {...}, "meta": {...}|null}`` or ``{"error": "text"}``;
  batching extension: ``{"batch": [[message, meta], ...]}``
- sink data, host -> plugin: the JSON of what the rule emits (object or array);
  batching extension: ``#batch <n>`` then ``n`` lines, one record's JSON each
- sink ack, plugin -> host: ``{}`` or ``{"error": "text"}``; a batch's may add
  ``"failed": <count>`` and, from a sink stopped mid-batch, ``"done": <count>``
- function call, host -> plugin: ``{"func": "Validate"|"Exec"|"IsAggregate", "arg": ...}``;
  batching extension: ``{"func": "ExecBatch", "arg": [[args...], ..., "<meta>"]}``
- function reply, plugin -> host: ``{"state": bool, "result": any}``;
  to ``ExecBatch``: ``result`` is ``{"values": [...], "errors": [[index, "text"], ...]}``
- handshake, plugin -> host (control and function channels): ``handshake``, or
  ``handshake {"batch": 1}`` from a plugin declaring capabilities
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from loader.jsonio import finite, loads
from sdk.batching import SINK_BATCH_PREFIX, split_sink_batch

try:
    from json.encoder import c_make_encoder
except ImportError:  # pragma: no cover - CPython always has the C accelerator
    c_make_encoder = None

#: Bounded, NaN-free decoding (loader/jsonio.py): orjson where it is exact,
#: Python's json for what only it reads (NaN and Infinity, which become null,
#: and integers of 19 digits or more).
_loads = loads


def _not_json(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


if c_make_encoder is not None:
    # One C encoder reused for every call: json.dumps builds a new one per call,
    # which costs more than encoding a small record.  Same output as
    # json.dumps(separators=(",", ":")); no circular-reference check (records
    # come from JSON, and a cycle still fails, with RecursionError).
    # NaN and Infinity are refused (allow_nan false) and the value is encoded
    # again with them as null: strict JSON for every peer, at no cost when
    # there are none (a rule's arithmetic can still make one, 1e308 * 10).
    _encoder = c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, False)

    def _dumps(obj: Any) -> str:
        try:
            return "".join(_encoder(obj, 0))
        except ValueError:
            return "".join(_encoder(finite(obj), 0))
else:  # pragma: no cover
    _strict_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

    def _dumps(obj: Any) -> str:
        try:
            return _strict_encode(obj)
        except ValueError:
            return _strict_encode(finite(obj))

ACK_OK = b"{}"
HANDSHAKE = b"handshake"


class DataChannelError(Exception):
    """A data channel operation failed; the message names the plugin and the symbol."""


class DataChannelTimeout(DataChannelError):
    """The plugin did not send, receive or answer in time (it may be restarting)."""


class DataChannelClosed(DataChannelError):
    """The channel was closed, possibly by another thread while this one waited."""


def timeout_ms(timeout: float | None) -> int:
    """An nng timeout option value: seconds -> ms, None -> -1 (wait forever)."""
    return -1 if timeout is None else max(0, int(timeout * 1000))


class SourceItem(NamedTuple):
    """One message of a source channel: a record, or the error the source reported.

    ``error`` is None for a record; for an error ``message`` and ``meta`` are None.
    """

    message: Any
    meta: dict | None
    error: str | None


# --- source ---------------------------------------------------------------


def encode_source_record(message: Any, meta: dict | None = None) -> bytes:
    """What a source plugin sends for one record (used by tests and our sdk peers)."""
    return _dumps({"message": message, "meta": meta}).encode()


def encode_source_error(error: str) -> bytes:
    return _dumps({"error": error}).encode()


def encode_source_batch(records: list[tuple[Any, dict | None]]) -> bytes:
    """What a source plugin sends for several records under the batching extension (used by tests)."""
    return _dumps({"batch": [[message, meta] for message, meta in records]}).encode()


def decode_source_items(data: bytes) -> list[SourceItem]:
    """Decode one source message into its items: one, or every record of a batch, in order.

    Like ``decode_source``, a malformed message (or a malformed batch entry)
    becomes an error item, not an exception.
    """
    try:
        obj = _loads(data)
    except ValueError as exc:
        return [SourceItem(None, None, f"invalid JSON on source channel: {exc}")]
    if type(obj) is dict:
        if "message" in obj:
            return [SourceItem(obj["message"], obj.get("meta"), None)]
        batch = obj.get("batch")
        if type(batch) is list:
            try:
                return [_new_item(SourceItem, (message, meta, None)) for message, meta in batch]
            except (TypeError, ValueError):
                return _batch_items_one_by_one(batch)
        if "error" in obj:
            return [SourceItem(None, None, str(obj["error"]))]
    return [SourceItem(None, None, f"source message has neither 'message', 'batch' nor 'error': {_preview(data)}")]


_new_item = tuple.__new__


def _batch_items_one_by_one(batch: list) -> list[SourceItem]:
    """A batch with a malformed entry: keep the good records, report each bad entry as an error."""
    items: list[SourceItem] = []
    for index, entry in enumerate(batch):
        if type(entry) is list and len(entry) == 2:
            items.append(SourceItem(entry[0], entry[1], None))
        else:
            items.append(SourceItem(None, None, f"batch entry {index} is not [message, meta]: {_dumps(entry)[:200]}"))
    return items


def decode_source(data: bytes) -> SourceItem:
    """Decode one source message; a malformed one becomes an error item, not an exception.

    A plugin that sends garbage should show up as an error in the rule, like an
    error the source reports itself, rather than tear down the channel.
    """
    try:
        obj = _loads(data)
        return SourceItem(obj["message"], obj.get("meta"), None)
    except (KeyError, TypeError):
        pass
    except ValueError as exc:
        return SourceItem(None, None, f"invalid JSON on source channel: {exc}")
    if isinstance(obj, dict) and "error" in obj:
        return SourceItem(None, None, str(obj["error"]))
    return SourceItem(None, None, f"source message has neither 'message' nor 'error': {_preview(data)}")


# --- sink -----------------------------------------------------------------


def encode_sink(data: Any) -> bytes:
    """The JSON of what a rule emits: an object, or an array of objects when batched."""
    return _dumps(data).encode()


def encode_sink_batch(records: list) -> bytes:
    """Several results in one sink message (batching extension): a ``#batch <n>`` line, then one line per record.

    Each line is exactly the bytes a plain message of that record would be, so
    the plugin hands them to ``collect`` without decoding them.  Compact JSON
    never contains a raw newline (strings escape it), so lines cannot be confused.
    """
    parts = [_dumps(record) for record in records]
    return SINK_BATCH_PREFIX + (f"{len(parts)}\n" + "\n".join(parts)).encode()


#: The parser of a batched sink message lives with the plugin side that needs
#: it (sdk has no dependency on the loader); the host uses the same one.
decode_sink_batch = split_sink_batch


def ack_counts(data: bytes) -> tuple[int | None, int | None]:
    """``(failed, done)`` of a batch ack; None where the ack does not say.

    ``failed``: how many of the batch's records failed (error acks).
    ``done``: how many records, from the first, the plugin handled before it
    stopped; the others were not collected and must be sent again.
    """
    if data == ACK_OK:
        return None, None
    try:
        obj = _loads(data)
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    return _count(obj.get("failed")), _count(obj.get("done"))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def decode_ack(data: bytes) -> str | None:
    """None for a positive ack (``{}``), else the plugin's error text."""
    if data == ACK_OK:
        return None
    try:
        obj = _loads(data)
    except ValueError:
        return f"invalid ack from plugin: {_preview(data)}"
    if isinstance(obj, dict):
        error = obj.get("error")
        return None if error is None else str(error)
    return f"invalid ack from plugin: {_preview(data)}"


def encode_ack(error: str | None = None) -> bytes:
    """What a sink plugin sends back (used by tests and our sdk peers)."""
    return ACK_OK if error is None else _dumps({"error": error}).encode()


# --- function -------------------------------------------------------------


def encode_call(func: str, arg: Any) -> bytes:
    return _dumps({"func": func, "arg": arg}).encode()


def encode_exec(args: list, meta: str) -> bytes:
    """An ``Exec`` call: the argument values followed by the meta string, in one list."""
    return _dumps({"func": "Exec", "arg": [*args, meta]}).encode()


def encode_exec_batch(rows: list[list], meta: str) -> bytes:
    """An ``ExecBatch`` call (batching extension): one argument list per row, then the meta string."""
    return _dumps({"func": "ExecBatch", "arg": [*rows, meta]}).encode()


def decode_exec_batch_result(result: Any, rows: int) -> tuple[list, dict[int, str]]:
    """``(values, errors by row index)`` of an ``ExecBatch`` reply's ``result``; ValueError if malformed."""
    if not isinstance(result, dict) or not isinstance(result.get("values"), list):
        raise ValueError(f"ExecBatch result must be an object with a 'values' list, got {_dumps(result)[:200]}")
    values = result["values"]
    if len(values) != rows:
        raise ValueError(f"ExecBatch answered {len(values)} values for {rows} rows")
    errors: dict[int, str] = {}
    for entry in result.get("errors") or ():
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int) and 0 <= entry[0] < rows):
            raise ValueError(f"ExecBatch error entry must be [row index, text], got {_dumps(entry)[:200]}")
        errors[entry[0]] = str(entry[1])
    return values, errors


def exec_meta(rule_id: str, op_id: str, instance_id: int, func_id: int) -> str:
    """The last ``Exec`` argument: a JSON *string* naming the calling function instance.

    eKuiper's SDKs key per-instance function contexts on it. It is constant for
    one function call site, so callers compute it once and reuse it.
    """
    return _dumps({"ruleId": rule_id, "opId": op_id, "instanceId": instance_id, "funcId": func_id})


def decode_call(data: bytes) -> tuple[str, Any]:
    """``(func, arg)`` of a call (used by tests and our sdk peers)."""
    obj = _loads(data)
    return obj["func"], obj.get("arg")


def encode_reply(state: bool, result: Any) -> bytes:
    """What a function plugin answers (used by tests and our sdk peers)."""
    return _dumps({"state": state, "result": result}).encode()


def decode_reply(data: bytes) -> tuple[bool, Any]:
    """``(state, result)``; a malformed reply is ``(False, <why>)``."""
    try:
        obj = _loads(data)
        return bool(obj["state"]), obj.get("result")
    except (ValueError, KeyError, TypeError):
        return False, f"invalid function reply from plugin: {_preview(data)}"


# --- handshake --------------------------------------------------------------


def decode_capabilities(message: bytes) -> dict[str, Any]:
    """What a handshake declares: ``handshake {"batch": 1}`` -> ``{"batch": 1}``; a plain one -> ``{}``.

    eKuiper's SDKs send the bare ``handshake`` and never declare anything, so
    they get the plain protocol.  Anything unreadable declares nothing.
    """
    if not message.startswith(HANDSHAKE + b" "):
        return {}
    try:
        capabilities = _loads(message[len(HANDSHAKE) + 1:])
    except ValueError:
        return {}
    return capabilities if isinstance(capabilities, dict) else {}


def declares_batch(capabilities: dict[str, Any]) -> bool:
    """True when a plugin process declared that it understands batch messages (version 1 or later)."""
    version = capabilities.get("batch")
    return isinstance(version, int) and not isinstance(version, bool) and version >= 1


def _preview(data: bytes, limit: int = 200) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("..." if len(data) > limit else "")
