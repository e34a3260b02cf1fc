"""The data channels' payloads: the encoders of both sides, and the plugin side's decoders.

The host decodes what plugins send with its own bounded, orjson-backed reader
(loader/wire/codec.py); everything else of the data channels is here, so
both sides write and read the same shapes (docs/protocol.md):

- source, plugin -> host: ``{"message": {...}, "meta": {...}|null}`` or ``{"error": "text"}``;
  batching extension: ``{"batch": [[message, meta], ...]}``
- sink data, host -> plugin: one message as eKuiper sends it, the JSON array of
  one result's rows (an object with ``sendSingle``, see docs/rules.md);
  batching extension: ``#batch <n>`` then ``n`` lines, one message's JSON each
- sink ack, plugin -> host: ``{}`` or ``{"error": "text"}``; a batch's may add
  ``"failed": <count>`` and, from a sink stopped mid-batch, ``"done": <count>``
- function call, host -> plugin: ``{"func": "Validate"|"Exec"|"IsAggregate", "arg": ...}``;
  batching extension: ``{"func": "ExecBatch", "arg": [[args...], ..., "<meta>"]}``
- function reply, plugin -> host: ``{"state": bool, "result": any}``;
  to ``ExecBatch``: ``result`` is ``{"values": [...], "errors": [[index, "text"], ...]}``

The plugin side writes a source record, its hot path, with the reused compact
encoder (``jsonenc``: about half the time of ``json.dumps``, with the same
treatment of NaN; eKuiper's SDK writes the same JSON with spaces, and every
JSON reader takes both), and its other single messages with ``json.dumps`` as
eKuiper's Python SDK does; the host writes compact, strict JSON.
"""

from __future__ import annotations

import json
from typing import Any

from sdk.protocol.jsonenc import compact, dumps_strict

ACK_OK = b"{}"
#: ``#`` cannot begin a JSON text, so a plain sink message is never mistaken for a batch.
SINK_BATCH_PREFIX = b"#batch "

# --- source (plugin -> host) ---------------------------------------------------


def encode_source_record(message: Any, meta: Any = None) -> bytes:
    """One record a source emits, with its metadata (a dict or None)."""
    if meta is None:
        return b'{"message":' + compact(message) + b',"meta":null}'
    return b'{"message":' + compact(message) + b',"meta":' + compact(meta) + b"}"


def encode_source_error(error: str) -> bytes:
    """An error the source reports; the rule decides what to do with it."""
    return json.dumps({"error": error}).encode()


def encode_batch_entry(message: Any, meta: Any) -> bytes:
    """One record of a source batch, encoded when emitted (the source may change its dict afterwards)."""
    return compact([message, meta])


def encode_source_batch(entries: list[bytes]) -> bytes:
    """A source batch message (batching extension) of entries made by ``encode_batch_entry``, in emit order."""
    return b'{"batch":[' + b",".join(entries) + b"]}"


# --- sink (host -> plugin) ----------------------------------------------------


def encode_sink(data: Any) -> bytes:
    """One sink message: by default the array of one result's rows, with ``sendSingle`` one row (an object)."""
    return dumps_strict(data).encode()


def encode_sink_batch(messages: list[Any]) -> bytes:
    """Several sink messages in one (batching extension): a ``#batch <n>`` line, then one line per message.

    Each line is exactly the bytes that message would be sent as alone (an
    array of rows, or an object), so the plugin hands them to ``collect``
    without decoding them.  Compact JSON never contains a raw newline (strings
    escape it), so lines cannot be confused.
    """
    parts = [dumps_strict(message) for message in messages]
    return SINK_BATCH_PREFIX + (f"{len(parts)}\n" + "\n".join(parts)).encode()


def split_sink_batch(data: bytes) -> list[bytes] | None:
    """The records of a batch message, each as its JSON bytes; None for a plain message.

    Raises ValueError for a message that starts like a batch but is malformed.
    """
    if not data.startswith(SINK_BATCH_PREFIX):
        return None
    header, _, body = data.partition(b"\n")
    try:
        count = int(header[len(SINK_BATCH_PREFIX) :])
    except ValueError:
        raise ValueError(f"bad batch header {header[:40]!r}") from None
    records = body.split(b"\n") if count else []
    if len(records) != count:
        raise ValueError(f"the batch header announces {count} records, the message holds {len(records)}")
    return records


# --- sink ack (plugin -> host) ------------------------------------------------


def encode_ack(error: str | None = None) -> bytes:
    """The ack of one sink message: ``{}``, or the error that kept it from being delivered."""
    return ACK_OK if error is None else json.dumps({"error": error}).encode()


def encode_batch_error_ack(failed: int, total: int, first: str) -> bytes:
    """The one ack of a batch in which ``failed`` records failed; ``first`` describes the first failure."""
    text = f"{failed} of {total} records failed; first: {first}"
    return json.dumps({"error": text, "failed": failed}).encode()


def encode_batch_ack(failed: int, done: int, total: int, first: str) -> bytes:
    """The ack of a batch: ``{}``, the error ack, plus ``"done"`` when only the first ``done`` were handled."""
    if done == total:
        return ACK_OK if not failed else encode_batch_error_ack(failed, total, first)
    ack: dict[str, Any] = {"done": done}
    if failed:
        ack.update(error=f"{failed} of {done} records failed; first: {first}", failed=failed)
    return json.dumps(ack).encode()


def ack_error_text(payload: bytes) -> str | None:
    """None for a positive ack, else its error text (the plugin reading an ack its own code made)."""
    if payload == ACK_OK:
        return None
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        return f"invalid ack {payload[:100]!r}"
    return None if error is None else str(error)


# --- function (host -> plugin, and the reply) ----------------------------------------


def encode_call(func: str, arg: Any) -> bytes:
    return dumps_strict({"func": func, "arg": arg}).encode()


def encode_exec(args: list[Any], meta: str) -> bytes:
    """An ``Exec`` call: the argument values followed by the meta string, in one list."""
    return dumps_strict({"func": "Exec", "arg": [*args, meta]}).encode()


def encode_exec_batch(rows: list[list[Any]], meta: str) -> bytes:
    """An ``ExecBatch`` call (batching extension): one argument list per row, then the meta string."""
    return dumps_strict({"func": "ExecBatch", "arg": [*rows, meta]}).encode()


def exec_meta(rule_id: str, op_id: str, instance_id: int, func_id: int) -> str:
    """The last ``Exec`` argument: a JSON *string* naming the calling function instance.

    eKuiper's SDKs key per-instance function contexts on it. It is constant for
    one function call site, so callers compute it once and reuse it.
    """
    return dumps_strict({"ruleId": rule_id, "opId": op_id, "instanceId": instance_id, "funcId": func_id})


def decode_call(data: bytes) -> tuple[str, Any]:
    """``(func, arg)`` of a call; ValueError, KeyError or TypeError when it is not one."""
    call = json.loads(data)
    return call["func"], call.get("arg")


def split_exec_arg(arg: Any) -> tuple[list[Any], str]:
    """``Exec``'s arg -> (the values, the meta JSON string); ValueError if it is not that."""
    if not isinstance(arg, list) or not arg or not isinstance(arg[-1], str):
        raise ValueError("Exec arg must be a list ending with the function meta JSON")
    return arg[:-1], arg[-1]


def decode_exec_meta(meta: str) -> tuple[str, str, Any]:
    """``(ruleId, opId, instanceId)`` of an ``exec_meta`` string; ValueError if it is not an object."""
    obj = json.loads(meta)
    if not isinstance(obj, dict):
        raise ValueError("Exec function meta must be a JSON object")
    return str(obj.get("ruleId", "")), str(obj.get("opId", "")), obj.get("instanceId", 0)


def encode_reply(state: bool, result: Any) -> bytes:
    """A function's answer; TypeError or ValueError when ``result`` is not JSON."""
    return json.dumps({"state": state, "result": result}).encode()


def encode_exec_batch_reply(values: list[Any], errors: list[list[Any]]) -> bytes:
    """The reply to ``ExecBatch``; TypeError, ValueError or RecursionError when a value is not JSON."""
    return compact({"state": True, "result": {"values": values, "errors": errors}})
