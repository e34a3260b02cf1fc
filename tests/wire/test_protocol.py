"""One round trip per message of the protocol, through the real code of both sides.

Each test encodes a message the way its sender does (the loader for the
host, the sdk for the plugin) and decodes it the way its receiver does,
without sockets: the two ends must agree on every shape in sdk/protocol/.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from loader.config import BatchSettings
from loader.plugins.manifest import PluginSpec
from loader.plugins.output import _sdk_record
from loader.plugins.process import plugin_argument
from loader.wire import addresses, codec
from sdk.api import Context, Function
from sdk.args import BatchOffer, RuntimeArgs, parse_argv
from sdk.batching import SourceBatcher
from sdk.log import JsonLineFormatter, context_logger
from sdk.protocol import names
from sdk.protocol.control import CMD_START, TYPE_FUNC, TYPE_SINK, TYPE_SOURCE, Control, decode_command, encode_command
from sdk.protocol.handshake import declares_batch, handshake_message, is_handshake
from sdk.protocol.messages import (
    encode_batch_ack,
    encode_call,
    encode_exec,
    encode_exec_batch,
    encode_sink,
    encode_sink_batch,
    exec_meta,
    split_sink_batch,
)
from sdk.runtimes import FunctionRuntime

LOG = logging.getLogger("test.protocol")


def _context(**senders: Any) -> Context:
    return Context("r1", "o1", 0, LOG, **senders)


# --- process argument and names -------------------------------------------------


def test_argjson_written_by_the_host_is_read_by_the_sdk() -> None:
    spec = PluginSpec(name="car", folder=Path("car"), manifest={}, digest="d", executable=Path("car/car.py"))
    argument = plugin_argument(spec, Path("/run/ipc"), 7000, BatchSettings(max_records=64, linger_ms=3.0))
    args = parse_argv(["car.py", argument])
    assert args == RuntimeArgs(
        send_timeout_ms=1000,
        ipc_dir="/run/ipc",
        keepalive_ms=7000,
        plugin_name="car",
        protocol=1,
        batch=BatchOffer(max_records=64, linger_ms=3.0),
    )


def test_the_host_listens_where_the_plugin_dials() -> None:
    ipc = Path("/run/ipc")
    assert addresses.control_path(ipc, "car").name == names.control_name("car") == "plugin_car.ipc"
    assert addresses.function_path(ipc, "inc").name == names.function_name("inc") == "func_inc.ipc"
    assert addresses.data_path(ipc, "r1", "o1", 0).name == names.data_name("r1", "o1", 0) == "r1_o1_0.ipc"
    assert addresses.ack_path(ipc, "r1", "o1", 0).name == names.ack_name("r1", "o1", 0) == "r1_o1_0_ack.ipc"


# --- control channel -------------------------------------------------------------


def test_a_start_command_reaches_the_plugin_as_sent() -> None:
    for control in (
        Control("mqtt", TYPE_SOURCE, "r1", "src-s", 0, "topic/a", {"qos": 1}),
        Control("file", TYPE_SINK, "r1", "sink-file-0", 0, config={"requireAck": True}),
        Control("inc", TYPE_FUNC, "", "", 0, config={}),
    ):
        cmd, received = decode_command(encode_command(CMD_START, control.to_dict()))
        assert (cmd, received) == (CMD_START, control)
        assert received.key == control.key
        assert Control.from_json(control.to_json()) == control


def test_the_control_json_keeps_the_keys_of_both_ekuiper_sdks() -> None:
    source = json.loads(Control("mqtt", TYPE_SOURCE, "r1", "o1", 0, "t", {}).to_json())
    assert source == {
        "symbolName": "mqtt",
        "meta": {"ruleId": "r1", "opId": "o1", "instanceId": 0},
        "pluginType": "source",
        "dataSource": "t",
        "datasource": "t",
        "config": {},
    }
    go_style = {**source, "dataSource": "from-go"}
    del go_style["datasource"]
    assert Control.from_dict(go_style).datasource == "from-go"
    assert names.instance_key("r1", "o1", 0, "mqtt") == Control.from_dict(source).key == "r1_o1_0_mqtt"


def test_a_handshake_declares_what_the_plugin_accepted() -> None:
    offered = handshake_message(RuntimeArgs(protocol=1, batch=BatchOffer(16, 1.0)).capabilities)
    assert is_handshake(offered) and declares_batch(codec.decode_capabilities(offered))
    plain = handshake_message(RuntimeArgs().capabilities)
    assert is_handshake(plain) and codec.decode_capabilities(plain) == {} and not declares_batch({})


# --- source ----------------------------------------------------------------------


def test_records_and_errors_a_source_emits_reach_the_host() -> None:
    sent: list[bytes] = []
    ctx = _context(emit=sent.append)
    ctx.emit({"n": 1, "s": "é"}, {"topic": "t"})
    ctx.emit([{"n": 2}], None)
    ctx.emit({"x": math.nan}, None)  # Python's json writes NaN; the host reads it as null
    ctx.emit_error("broken")
    items = [item for data in sent for item in codec.decode_source_items(data)]
    assert items == [
        codec.SourceItem({"n": 1, "s": "é"}, {"topic": "t"}, None),
        codec.SourceItem([{"n": 2}], None, None),
        codec.SourceItem({"x": None}, None, None),
        codec.SourceItem(None, None, "broken"),
    ]


def test_a_source_batch_reaches_the_host_in_emit_order() -> None:
    sent: list[bytes] = []
    batcher = SourceBatcher(sent.append, max_records=3, linger_s=60.0, on_error=lambda err: None)
    try:
        ctx = _context(emit=sent.append, batcher=batcher)
        for n in range(4):
            ctx.emit({"n": n}, {"k": n} if n % 2 else None)
        ctx.emit_error("late")  # sends the buffered record first
    finally:
        batcher.close()
    assert len(sent) == 3 and sent[0].startswith(b'{"batch":')
    items = [item for data in sent for item in codec.decode_source_items(data)]
    assert items == [codec.SourceItem({"n": n}, {"k": n} if n % 2 else None, None) for n in range(4)] + [
        codec.SourceItem(None, None, "late")
    ]


# --- sink ------------------------------------------------------------------------


def test_sink_messages_reach_the_plugin_as_the_rule_emitted_them() -> None:
    record = {"a": 1, "b": [1.5, "é"], "c": math.inf}  # the host writes strict JSON: inf becomes null
    assert split_sink_batch(encode_sink(record)) is None  # a plain message is never a batch
    assert json.loads(encode_sink(record)) == {"a": 1, "b": [1.5, "é"], "c": None}
    records = [{"n": n, "text": "two\nlines"} for n in range(3)]
    lines = split_sink_batch(encode_sink_batch(records))
    assert lines == [encode_sink(r) for r in records]
    assert [json.loads(line) for line in lines] == records


def test_acks_a_sink_sends_reach_the_host() -> None:
    acks: list[bytes] = []
    ctx = _context(ack=acks.append)
    ctx.ack_ok()
    ctx.ack_error("disk full")
    assert [codec.decode_ack(a) for a in acks] == [None, "disk full"]
    assert [codec.ack_counts(a) for a in acks] == [(None, None), (None, None)]
    failed = encode_batch_ack(failed=2, done=5, total=5, first="record 1: no")
    assert codec.decode_ack(failed) == "2 of 5 records failed; first: record 1: no"
    assert codec.ack_counts(failed) == (2, None)
    stopped = encode_batch_ack(failed=0, done=3, total=5, first="")
    assert codec.decode_ack(stopped) is None and codec.ack_counts(stopped) == (None, 3)
    assert codec.ack_counts(encode_batch_ack(failed=0, done=5, total=5, first="")) == (None, None)


# --- function --------------------------------------------------------------------


class _Times10(Function):
    def validate(self, args: list[Any]) -> str:
        return "" if len(args) == 1 else "one argument"

    def exec(self, args: list[Any], ctx: Context) -> Any:
        if args[0] < 0:
            raise ValueError("negative")
        return {"v": args[0] * 10, "rule": ctx.get_rule_id()}

    def is_aggregate(self) -> bool:
        return True


def _function(batch: bool = False) -> FunctionRuntime:
    args = RuntimeArgs(protocol=1, batch=BatchOffer(16, 1.0) if batch else None)
    return FunctionRuntime(Control("times10", TYPE_FUNC, "", "", 0), _Times10, args)


def test_function_calls_are_answered_in_the_shape_the_host_reads() -> None:
    runtime = _function()
    meta = exec_meta("r7", "project", 0, 1)
    assert codec.decode_reply(runtime.handle(encode_call("IsAggregate", None))) == (True, True)
    assert codec.decode_reply(runtime.handle(encode_call("Validate", [1]))) == (True, "")
    assert codec.decode_reply(runtime.handle(encode_call("Validate", [1, 2]))) == (False, "one argument")
    assert codec.decode_reply(runtime.handle(encode_exec([4], meta))) == (True, {"v": 40, "rule": "r7"})
    state, why = codec.decode_reply(runtime.handle(encode_exec([-1], meta)))
    assert state is False and "ValueError: negative" in why


def test_an_exec_batch_is_answered_row_by_row() -> None:
    runtime = _function(batch=True)
    rows = [[1], [-1], [3]]
    state, result = codec.decode_reply(runtime.handle(encode_exec_batch(rows, exec_meta("r8", "project", 0, 2))))
    assert state is True
    values, errors = codec.decode_exec_batch_result(result, len(rows))
    assert values == [{"v": 10, "rule": "r8"}, None, {"v": 30, "rule": "r8"}]
    assert list(errors) == [1] and "negative" in errors[1]


# --- log line --------------------------------------------------------------------


def test_an_sdk_log_line_is_recognised_by_the_host() -> None:
    logger = context_logger("counter", "r1", "o1", 0)
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "slow", None, None)
    for log_filter in logger.filters:
        log_filter.filter(record)
    parsed = _sdk_record(JsonLineFormatter().format(record))
    assert parsed is not None
    assert parsed["event"] == "slow" and parsed["level"] == "warning"
    assert {k: parsed[k] for k in ("symbol", "rule", "op", "instance")} == {
        "symbol": "counter",
        "rule": "r1",
        "op": "o1",
        "instance": 0,
    }
    assert _sdk_record(json.dumps({"level": "info", "event": "not ours"})) is None
