"""The data channels' payloads, byte for byte where eKuiper's SDK cares."""

from __future__ import annotations

import json

from loader.wire import codec
from sdk.protocol import messages


def test_source_record_error_and_garbage():
    record = codec.decode_source(b'{"message": {"a": 1}, "meta": {"topic": "t"}}')
    assert record == codec.SourceItem({"a": 1}, {"topic": "t"}, None)
    assert codec.decode_source(b'{"message": {"a": 1}, "meta": null}').meta is None
    assert codec.decode_source(b'{"error": "broken"}') == codec.SourceItem(None, None, "broken")
    assert "invalid JSON" in codec.decode_source(b"{nope").error
    assert "neither 'message' nor 'error'" in codec.decode_source(b"[1, 2]").error
    assert "neither 'message' nor 'error'" in codec.decode_source(b'{"other": 1}').error


def test_source_round_trip():
    item = codec.decode_source(messages.encode_source_record({"n": 1}, {"m": 2}))
    assert item == codec.SourceItem({"n": 1}, {"m": 2}, None)
    assert codec.decode_source(messages.encode_source_error("x")).error == "x"


def test_sink_data_and_acks():
    assert json.loads(messages.encode_sink({"a": "é"})) == {"a": "é"}
    assert json.loads(messages.encode_sink([{"a": 1}, {"a": 2}])) == [{"a": 1}, {"a": 2}]
    assert messages.encode_ack() == b"{}"
    assert codec.decode_ack(b"{}") is None
    assert codec.decode_ack(b"{ }") is None
    assert codec.decode_ack(messages.encode_ack("disk full")) == "disk full"
    assert codec.decode_ack(b'{"error": "disk full"}') == "disk full"
    assert "invalid ack" in codec.decode_ack(b"nope")
    assert "invalid ack" in codec.decode_ack(b"[]")


def test_function_call_shapes():
    assert json.loads(messages.encode_call("Validate", [1, "a"])) == {"func": "Validate", "arg": [1, "a"]}
    assert json.loads(messages.encode_call("IsAggregate", None)) == {"func": "IsAggregate", "arg": None}
    meta = messages.exec_meta("rule1", "op1", 2, 3)
    assert isinstance(meta, str)
    assert json.loads(meta) == {"ruleId": "rule1", "opId": "op1", "instanceId": 2, "funcId": 3}
    call = json.loads(messages.encode_exec([1, 2], meta))
    assert call == {"func": "Exec", "arg": [1, 2, meta]}
    assert messages.decode_call(messages.encode_exec([1, 2], meta)) == ("Exec", [1, 2, meta])


def test_function_replies():
    assert codec.decode_reply(b'{"state": true, "result": 5}') == (True, 5)
    assert codec.decode_reply(messages.encode_reply(False, "bad")) == (False, "bad")
    state, why = codec.decode_reply(b"handshake")
    assert state is False and "invalid function reply" in why
    assert codec.decode_reply(b'{"result": 1}')[0] is False


def test_timeout_ms():
    assert codec.timeout_ms(None) == -1
    assert codec.timeout_ms(0.25) == 250
    assert codec.timeout_ms(-1) == 0


def test_decoding_accepts_what_python_json_writes_beyond_strict_json():
    """NaN, Infinity and integers beyond 64 bits come from Python plugins' json.dumps; they stay records.

    NaN and Infinity are not JSON: they become null (docs/protocol.md), so
    nothing downstream (the JSON log, sink payloads) carries them on.
    """
    from loader.wire.codec import decode_source_items

    big = 123456789012345678901234567890
    data = json.dumps({"message": {"v": float("nan"), "inf": float("inf")}, "meta": None}).encode()
    [item] = decode_source_items(data)
    assert item.error is None
    assert item.message == {"v": None, "inf": None}
    [item] = decode_source_items(json.dumps({"message": {"big": big, "neg": -big}, "meta": None}).encode())
    assert item.message == {"big": big, "neg": -big}  # exact ints, not floats
    assert type(item.message["big"]) is int
    [bad] = decode_source_items(b"{not json")
    assert bad.error is not None and "invalid JSON" in bad.error
