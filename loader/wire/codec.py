"""The host's decoding of what plugins send on the data channels, plus the
exceptions the three data channels share.

These run once per record, so they are the bounded orjson reader of
loader/jsonio.py, with no validation layer and no per-message objects beyond
one small tuple: at 30,000 records/s every microsecond is about 3% of the
budget.  Everything else of the protocol (the encoders of both sides, the
plugin side's decoders, the handshake, names and the Control) is in
sdk/protocol/, which both sides import; docs/protocol.md gives the shapes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from loader.jsonio import loads
from sdk.protocol import handshake
from sdk.protocol.jsonenc import dumps_strict as _dumps
from sdk.protocol.messages import ACK_OK

#: Bounded, NaN-free decoding (loader/jsonio.py): orjson where it is exact,
#: Python's json for what only it reads (NaN and Infinity, which become null,
#: and integers of 19 digits or more).
_loads = loads


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
    meta: dict[str, Any] | None
    error: str | None


# --- source ---------------------------------------------------------------


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


def _batch_items_one_by_one(batch: list[Any]) -> list[SourceItem]:
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


# --- function -------------------------------------------------------------


def decode_exec_batch_result(result: Any, rows: int) -> tuple[list[Any], dict[int, str]]:
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


def decode_reply(data: bytes) -> tuple[bool, Any]:
    """``(state, result)``; a malformed reply is ``(False, <why>)``."""
    try:
        obj = _loads(data)
        return bool(obj["state"]), obj.get("result")
    except (ValueError, KeyError, TypeError):
        return False, f"invalid function reply from plugin: {_preview(data)}"


def decode_capabilities(message: bytes) -> dict[str, Any]:
    """What a handshake declares (``sdk.protocol.handshake``), read with the host's bounded parser."""
    return handshake.decode_capabilities(message, _loads)


def _preview(data: bytes, limit: int = 200) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("..." if len(data) > limit else "")
