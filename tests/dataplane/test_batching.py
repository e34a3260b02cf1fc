"""The batching extension on the host side, from the codec to the running loader.

Host-level tests drive the loader's own classes against raw pynng peers (in
threads, real ipc sockets); end-to-end tests run the real loader on plugins
built with ``sdk`` (tests/fixtures/rules/*.py) and, for the fallback, with
eKuiper's official SDK.  Order, flush by size and by linger, one ack per
batch, at-least-once with batches, and the fallback when batching is not
offered or not declared.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynng
import pytest

from loader.config import BatchSettings, ConfigError, load_config
from loader.dataplane.function import CallSite
from loader.rules.builtins import BUILTINS
from loader.rules.pipeline import RulePipeline
from loader.rules.sql import compile_query, parse_select
from loader.wire import codec
from loader.wire.addresses import control_path
from loader.wire.control import ControlChannel
from loader.wire.function import FunctionChannel, FunctionError
from loader.wire.source import SourceChannel
from sdk.protocol import handshake, messages
from tests.support.batching import SinkPeer, install_batchfix, noted, portable_sink, probed_messages
from tests.support.ekuiper_env import EKUIPER_VERSION, venv_dir
from tests.support.rules import (
    FIXTURES,
    collected,
    install_collector,
    install_seqsrc,
    loader_for,
    seq_config,
    sink_messages,
    stream,
    write_json,
)
from tests.support.waiting import wait_until

# How long this file waits for records: batches under a loaded CI machine take their time.
WAIT_S = 20.0

# --- codec -------------------------------------------------------------------


def test_source_batch_decodes_into_records_in_order():
    records = [({"n": 1}, {"m": 1}), ({"n": 2}, None), ([{"a": 1}], None)]
    data = messages.encode_source_batch([messages.encode_batch_entry(m, meta) for m, meta in records])
    assert json.loads(data) == {"batch": [[{"n": 1}, {"m": 1}], [{"n": 2}, None], [[{"a": 1}], None]]}
    assert codec.decode_source_items(data) == [
        codec.SourceItem({"n": 1}, {"m": 1}, None),
        codec.SourceItem({"n": 2}, None, None),
        codec.SourceItem([{"a": 1}], None, None),
    ]
    # Plain messages decode as before, one item each.
    assert codec.decode_source_items(messages.encode_source_record({"n": 3})) == [
        codec.SourceItem({"n": 3}, None, None)
    ]
    assert codec.decode_source_items(b'{"error": "boom"}') == [codec.SourceItem(None, None, "boom")]


def test_malformed_source_batches_become_error_items():
    items = codec.decode_source_items(b'{"batch": [[{"n": 1}, null], [1, 2, 3], {"x": 1}, [{"n": 2}, null]]}')
    assert [i.message for i in items] == [{"n": 1}, None, None, {"n": 2}]
    assert items[1].error.startswith("batch entry 1 is not [message, meta]")
    assert items[2].error.startswith("batch entry 2 is not [message, meta]")
    assert codec.decode_source_items(b"{nope")[0].error.startswith("invalid JSON")
    assert "neither 'message', 'batch' nor 'error'" in codec.decode_source_items(b'{"batch": 3}')[0].error


def test_sink_batch_lines_are_the_plain_messages():
    records = [{"n": 1, "s": "line\nbreak"}, {"u": "\u00e9\u2028"}, [1, 2]]
    data = messages.encode_sink_batch(records)
    assert data.startswith(b"#batch 3\n")
    assert messages.split_sink_batch(data) == [messages.encode_sink(r) for r in records]
    assert [json.loads(line) for line in messages.split_sink_batch(data)] == records
    assert messages.split_sink_batch(messages.encode_sink({"batch": [1]})) is None  # a plain record is never a batch
    with pytest.raises(ValueError):
        messages.split_sink_batch(b"#batch 2\n{}")


def test_exec_batch_shapes():
    call = json.loads(messages.encode_exec_batch([[1, "a"], [2, "b"]], "META"))
    assert call == {"func": "ExecBatch", "arg": [[1, "a"], [2, "b"], "META"]}
    values, errors = codec.decode_exec_batch_result({"values": [1, None], "errors": [[1, "bad"]]}, 2)
    assert values == [1, None] and errors == {1: "bad"}
    for bad in ({"values": [1]}, [1, 2], {"values": [1, 2], "errors": [[5, "x"]]}):
        with pytest.raises(ValueError):
            codec.decode_exec_batch_result(bad, 2)


def test_capabilities_come_only_from_our_handshake_form():
    assert handshake.decode_capabilities(b'handshake {"batch":1}') == {"batch": 1}
    for plain in (b"handshake", b"hello", b"handshake{}", b"handshake [1]", b"handshake {bad"):
        assert handshake.decode_capabilities(plain) == {}
    assert handshake.declares_batch({"batch": 1}) and handshake.declares_batch({"batch": 2})
    assert not any(handshake.declares_batch(c) for c in ({}, {"batch": 0}, {"batch": True}, {"batch": "1"}))


def test_fast_encoder_matches_json_dumps():
    values = [{"a": [1, 2.5, None, True], "b": "x\n\u00e9", "c": {"d": -0.0}}, "s", 1e300, [], {}]
    for value in values:
        assert messages.encode_sink(value) == json.dumps(value, separators=(",", ":")).encode()
    with pytest.raises(TypeError):
        messages.encode_sink({"a": object()})


# --- the offer: config and process argument ------------------------------------


def test_config_batch_section_and_the_offer(tmp_path):
    from loader.plugins.process import plugin_argument

    path = tmp_path / "loader.yaml"
    path.write_text("batch: {max_records: 64, linger_ms: 0.5}\n")
    config = load_config(path)
    assert config.batch == BatchSettings(enabled=True, max_records=64, linger_ms=0.5)
    spec = SimpleNamespace(name="car")
    offer = json.loads(plugin_argument(spec, Path("/run/x"), 5000, config.batch))
    assert offer["portableLoader"]["batch"] == {"maxRecords": 64, "lingerMs": 0.5}
    assert offer["portableLoader"]["protocol"] == 1 and offer["sendTimeout"] == 1000
    off = json.loads(plugin_argument(spec, Path("/run/x"), 5000, BatchSettings(enabled=False)))
    assert "batch" not in off["portableLoader"]
    assert load_config(None).batch == BatchSettings()
    path.write_text("batch: {max_records: 0}\n")
    with pytest.raises(ConfigError, match="batch/max_records"):
        load_config(path)


# --- source channel ----------------------------------------------------------


def test_source_channel_hands_out_records_of_batches_in_order(ipc_dir):
    channel = SourceChannel(ipc_dir / "r_o_0.ipc", "p", "s")
    channel.open()
    push = pynng.Push0(send_timeout=2000)
    push.dial(f"ipc://{channel.path}", block=True)
    try:
        push.send(messages.encode_source_batch([messages.encode_batch_entry({"n": n}, None) for n in range(5)]))
        push.send(messages.encode_source_record({"n": 5}))
        push.send(messages.encode_source_batch([messages.encode_batch_entry({"n": n}, None) for n in range(6, 10)]))
        assert channel.recv(2).message == {"n": 0}
        time.sleep(0.1)
        first = channel.recv_batch(3, 2)  # bounded: the rest of the batch stays queued
        assert [i.message["n"] for i in first] == [1, 2, 3]
        rest = channel.recv_batch(100, 2)
        while len(rest) < 6:
            rest += channel.recv_batch(100, 2)
        assert [i.message["n"] for i in rest] == list(range(4, 10))
    finally:
        push.close()
        channel.close()


# --- sink: deliver_many --------------------------------------------------------


@pytest.mark.parametrize("require_ack", [True, False])
def test_deliver_many_sends_batches_in_order_when_the_plugin_declared_them(ipc_dir, require_ack):
    sink = portable_sink(ipc_dir, max_records=4, require_ack=require_ack)
    peer = SinkPeer(sink.channel, reply=lambda m: b"{}" if require_ack else None)
    sink.channel.connect()
    try:
        sink.deliver_many([[{"n": n}] for n in range(10)])
        sink.deliver_many([[{"n": 10}]])  # a lone message goes as a plain message
        sink.deliver({"n": 11})
        deadline = time.monotonic() + 3
        while len(peer.messages) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [m.split(b"\n")[0] for m in peer.messages] == [
            b"#batch 4",
            b"#batch 4",
            b"#batch 2",
            b'[{"n":10}]',
            b'[{"n":11}]',
        ]
        # each line of a batch is the message eKuiper would send alone: the array of one result's rows
        assert peer.messages[0].split(b"\n")[1:] == [b'[{"n":0}]', b'[{"n":1}]', b'[{"n":2}]', b'[{"n":3}]']
        assert peer.records() == [[{"n": n}] for n in range(12)]
        assert sink.metrics.records_in == sink.metrics.records_out == 12
    finally:
        sink.channel.close()
        peer.close()


def test_deliver_many_without_the_capability_sends_one_plain_message_per_result(ipc_dir):
    sink = portable_sink(ipc_dir, max_records=0)
    peer = SinkPeer(sink.channel)
    sink.channel.connect()
    try:
        sink.deliver_many([[{"n": n}] for n in range(6)] + [[{"n": 6}, {"n": 7}]])
        assert peer.messages == [f'[{{"n":{n}}}]'.encode() for n in range(6)] + [b'[{"n":6},{"n":7}]']
        assert sink.metrics.records_in == sink.metrics.records_out == 8
    finally:
        sink.channel.close()
        peer.close()


def test_an_error_ack_of_a_batch_counts_its_failed_records(ipc_dir):
    def reply(message: bytes) -> bytes:
        if message.startswith(b"#batch"):
            return json.dumps({"error": "1 of 3 records failed; first: record 2: no", "failed": 1}).encode()
        return b'{"error": "plain no"}'

    sink = portable_sink(ipc_dir, max_records=3)
    peer = SinkPeer(sink.channel, reply)
    sink.channel.connect()
    try:
        sink.deliver_many([[{"n": n}] for n in range(3)])
        sink.deliver({"n": 3})
        metrics = sink.metrics
        assert (metrics.records_in, metrics.records_out, metrics.exceptions) == (4, 2, 2)
        assert metrics.last_exception == "plain no"
    finally:
        sink.channel.close()
        peer.close()


def test_a_partial_ack_sends_the_rest_to_the_next_process(ipc_dir):
    replies = iter([b'{"done": 1}'])
    sink = portable_sink(ipc_dir, max_records=4)
    peer = SinkPeer(sink.channel, reply=lambda m: next(replies, b"{}"))
    sink.channel.connect()
    supervisor = sink.supervisor
    bumped: list[float] = []

    def next_process() -> None:
        time.sleep(0.3)
        bumped.append(time.monotonic())
        supervisor.generation += 1

    threading.Thread(target=next_process, daemon=True).start()
    try:
        sink.deliver_many([[{"n": n}] for n in range(4)])
        done_at = time.monotonic()
        # The plugin said it stopped after the first record: the other three waited for the
        # next process (generation 2) rather than racing the stopping one, and went once.
        assert bumped and done_at >= bumped[0]
        assert peer.records() == [[{"n": n}] for n in (0, 1, 2, 3, 1, 2, 3)]
        assert peer.messages[1].startswith(b"#batch 3\n")
        assert sink.metrics.records_out == 4
    finally:
        sink.channel.close()
        peer.close()


# --- function channel ----------------------------------------------------------


class FunctionPeer:
    """A function plugin on raw pynng in a thread: handshakes with ``hello``, answers calls."""

    def __init__(self, path: Path, hello: bytes, answer_batches: bool = True, drop_first_batch: bool = False):
        self.calls: list[tuple[str, Any]] = []
        self.sock = pynng.Req0(recv_timeout=200, resend_time=0)
        self.sock.dial(f"ipc://{path}", block=True)
        self.hello, self.answer_batches, self.drop_first_batch = hello, answer_batches, drop_first_batch
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        request = self.hello
        while not self.stop.is_set():
            try:
                self.sock.send(request)
                call = self.sock.recv()
            except pynng.Timeout:
                request = self.hello
                continue
            except pynng.NNGException:
                return
            func, arg = messages.decode_call(call)
            self.calls.append((func, arg))
            if func == "ExecBatch" and self.drop_first_batch:
                self.sock.close()  # dies without answering
                return
            if func == "Validate":
                request = messages.encode_reply(True, "")
            elif func == "Exec":
                request = (
                    messages.encode_reply(True, arg[0] * 10) if arg[0] >= 0 else messages.encode_reply(False, "neg")
                )
            elif func == "ExecBatch" and self.answer_batches:
                rows = arg[:-1]
                values = [r[0] * 10 if r[0] >= 0 else None for r in rows]
                errors = [[i, "neg"] for i, r in enumerate(rows) if r[0] < 0]
                request = messages.encode_reply(True, {"values": values, "errors": errors})
            else:
                request = messages.encode_reply(False, f"unknown function call {func!r}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def function_channel(ipc_dir: Path) -> FunctionChannel:
    channel = FunctionChannel(ipc_dir / "func_f.ipc", "rawfn", "f", timeout=3)
    channel.open()
    return channel


def test_exec_batch_is_one_call_when_declared_with_per_row_errors(ipc_dir):
    channel = function_channel(ipc_dir)
    peer = FunctionPeer(channel.path, b'handshake {"batch":1}')
    try:
        channel.validate([])  # takes the handshake, and with it the capabilities
        assert channel.batch_capable
        results = channel.exec_batch([[1], [-1], [3]], "M")
        assert results[0] == 10 and results[2] == 30
        assert isinstance(results[1], FunctionError) and results[1].error == "neg"
        assert peer.calls[-1] == ("ExecBatch", [[1], [-1], [3], "M"])
    finally:
        peer.close()
        channel.close()


def test_exec_batch_falls_back_to_exec_per_row_for_a_plain_handshake(ipc_dir):
    channel = function_channel(ipc_dir)
    peer = FunctionPeer(channel.path, b"handshake", answer_batches=False)
    try:
        channel.validate([])
        assert not channel.batch_capable
        results = channel.exec_batch([[1], [-1], [3]], "M")
        assert results[0] == 10 and isinstance(results[1], FunctionError) and results[2] == 30
        assert [c[0] for c in peer.calls] == ["Validate", "Exec", "Exec", "Exec"]
    finally:
        peer.close()
        channel.close()


def test_a_batch_in_flight_goes_row_by_row_to_a_replacement_that_does_not_declare_batches(ipc_dir):
    channel = function_channel(ipc_dir)
    old = FunctionPeer(channel.path, b'handshake {"batch":1}', drop_first_batch=True)
    try:
        channel.validate([])
        result: dict[str, Any] = {}
        caller = threading.Thread(target=lambda: result.update(r=channel.exec_batch([[1], [2]], "M")))
        caller.start()
        deadline = time.monotonic() + 3
        while not old.calls[1:] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert old.calls[-1][0] == "ExecBatch"
        new = FunctionPeer(channel.path, b"handshake", answer_batches=False)
        caller.join(5)
        assert result["r"] == [10, 20]
        assert [c[0] for c in new.calls] == ["Exec", "Exec"]
        new.close()
    finally:
        old.close()
        channel.close()


# --- control channel -----------------------------------------------------------


def test_control_channel_records_capabilities_per_process(ipc_dir):
    async def scenario() -> list[dict]:
        channel = ControlChannel(control_path(ipc_dir, "capx"), "capx")
        await channel.open()
        seen = []
        try:
            for hello in (b'handshake {"batch":1}', b"handshake"):
                channel.expect_new_process()
                seen.append(dict(channel.capabilities))
                peer = pynng.Req0(resend_time=0)
                peer.dial(f"ipc://{channel.path}", block=True)
                await asyncio.to_thread(peer.send, hello)
                await channel.wait_handshake(3)
                seen.append(dict(channel.capabilities))
                peer.close()
        finally:
            await channel.close()
        return seen

    assert asyncio.run(scenario()) == [{}, {"batch": 1}, {}, {}]


# --- query: batched function calls ---------------------------------------------


class BatchFn:
    """A batchable function: records every per-row and batched call it gets."""

    def __init__(self, fn, batching: bool = True) -> None:
        self.fn, self.batching = fn, batching
        self.rows: list[list] = []
        self.batches: list[list[list]] = []

    def __call__(self, args: list) -> Any:
        self.rows.append(args)
        return self.fn(*args)

    def many(self, rows: list[list]) -> list[Any]:
        self.batches.append(rows)
        results: list[Any] = []
        for args in rows:
            try:
                results.append(self.fn(*args))
            except Exception as exc:
                results.append(exc)
        return results


def compiled(sql: str, functions: dict[str, Any]):
    table = {**BUILTINS, **functions}
    return compile_query(parse_select(sql), lambda name, index: table.get(name))


def per_row(sql: str, functions: dict[str, Any], rows: list[dict]) -> list[Any]:
    query = compiled(sql, functions)
    out = []
    for row in rows:
        try:
            out.append(query.apply(row))
        except Exception as exc:
            out.append(type(exc).__name__)
    return out


def test_one_batched_call_per_call_site_inner_first_where_first():
    rows = [{"n": n} for n in range(8)]
    f, g, h = BatchFn(lambda x: x + 100), BatchFn(lambda x: x * 2), BatchFn(lambda x: x % 3)
    query = compiled("SELECT n, f(g(n)) AS fg, g(n) AS again FROM s WHERE h(n) <> 0", {"f": f, "g": g, "h": h})
    assert query.batching
    outcomes = query.apply_many(rows)
    expected = [None if n % 3 == 0 else {"n": n, "fg": n * 2 + 100, "again": n * 2} for n in range(8)]
    assert outcomes == expected
    kept = [n for n in range(8) if n % 3]
    assert h.batches == [[[n] for n in range(8)]]  # WHERE: one call for the whole batch
    assert g.batches == [[[n] for n in kept]] * 2  # two call sites of g: one call each, only rows that passed
    assert f.batches == [[[n * 2] for n in kept]]  # after g's results
    assert f.rows == g.rows == h.rows == []  # nothing went row by row


def test_batched_evaluation_calls_only_what_per_row_evaluation_would():
    rows = [{"n": n, "m": None if n == 2 else n} for n in range(6)]
    sql = "SELECT CASE WHEN n > 3 THEN f(n) ELSE 0 END AS c, m + f(n) AS s, n > 4 OR f(-n) IS NULL AS o FROM s"
    f = BatchFn(lambda x: x * 10)
    outcomes = compiled(sql, {"f": f}).apply_many(rows)
    single = BatchFn(lambda x: x * 10)
    assert outcomes == per_row(sql, {"f": single}, rows)
    assert sorted(args[0] for batch in f.batches for args in batch) == sorted(args[0] for args in single.rows)
    called = sorted(args[0] for batch in f.batches for args in batch)
    # CASE branch only for n > 3; m + f(n) not for the NULL m; OR stops at n > 4.
    assert called == sorted([4, 5] + [0, 1, 3, 4, 5] + [0, -1, -2, -3, -4])


def test_a_failed_row_fails_alone_and_a_failed_call_fails_its_rows():
    rows = [{"n": n} for n in range(4)]

    def picky(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    outcomes = compiled("SELECT f(n) AS v FROM s", {"f": BatchFn(picky)}).apply_many(rows)
    assert outcomes[0] == {"v": 0} and outcomes[1] == {"v": 1} and outcomes[3] == {"v": 3}
    assert isinstance(outcomes[2], ValueError)

    class Broken(BatchFn):
        def many(self, rows):
            raise TimeoutError("plugin gone")

    outcomes = compiled("SELECT n, f(n) AS v FROM s WHERE n > 1", {"f": Broken(picky)}).apply_many(rows)
    assert outcomes[:2] == [None, None] and all(isinstance(o, TimeoutError) for o in outcomes[2:])


def test_queries_without_batchable_functions_keep_per_row_evaluation():
    assert not compiled("SELECT upper(s) AS u FROM s", {}).batching
    assert not compiled("SELECT f(n) AS v FROM s", {"f": BatchFn(abs, batching=False)}).batching


def test_pipeline_delivers_each_batch_in_order_to_every_sink():
    class Recorder:
        def __init__(self) -> None:
            self.metrics = SimpleNamespace()
            self.batches: list[list] = []

        def deliver_many(self, records: list) -> None:
            self.batches.append(records)

    f = BatchFn(lambda x: -x)
    sinks = [Recorder(), Recorder()]
    pipeline = RulePipeline("r", "s", compiled("SELECT n, f(n) AS m FROM s WHERE n <> 3", {"f": f}), sinks)
    pipeline.on_records([{"n": n} for n in range(6)] + ["not a record"])
    expected = [[{"n": n, "m": -n}] for n in range(6) if n != 3]
    assert all(s.batches == [expected] for s in sinks)
    assert len(f.batches) == 1
    assert pipeline.source_metrics.exceptions == 1 and pipeline.op_metrics.records_out == 5


def test_call_site_chunks_batches_by_max_records():
    class Channel:
        def __init__(self) -> None:
            self.sizes: list[int] = []
            self.batch_capable = True

        def exec_batch(self, rows, meta, timeout=None):
            self.sizes.append(len(rows))
            return [r[0] for r in rows]

        def exec(self, args, meta, timeout=None):
            self.sizes.append(-1)
            return args[0]

    channel = Channel()
    site = CallSite(channel, "M", BatchSettings(max_records=4))
    assert site.batching
    assert site.many([[n] for n in range(9)]) == list(range(9))
    assert channel.sizes == [4, 4, -1]  # the lone last row is a plain Exec
    assert not CallSite(channel, "M", BatchSettings(enabled=False)).batching


# --- end to end: the real loader -----------------------------------------------


def stamp_stream(data: Path, name: str = "st") -> None:
    write_json(
        data / "streams" / f"{name}.json",
        {"sql": f'CREATE STREAM {name} () WITH (TYPE="stamp", DATASOURCE="x", FORMAT="json")'},
    )


def stamp_config(etc: Path, **conf: Any) -> None:
    (etc / "sources").mkdir(parents=True, exist_ok=True)
    (etc / "sources" / "stamp.yaml").write_text(json.dumps({"default": conf}))


def probe_rule(data: Path, rule_id: str, sql: str, out: Path, require_ack: bool = True) -> None:
    write_json(
        data / "rules" / f"{rule_id}.json",
        {"id": rule_id, "sql": sql, "actions": [{"probe": {"path": str(out), "requireAck": require_ack}}]},
    )


def probed(path: Path) -> list[tuple[dict, float]]:
    """The rows the probe sink got, each with its message's arrival time (a message is an array of rows)."""
    rows: list[tuple[dict, float]] = []
    for message, at in probed_messages(path):
        rows.extend((row, at) for row in (message if isinstance(message, list) else [message]))
    return rows


def test_source_to_sink_in_order_through_batches(processes, env):
    install_seqsrc(env["plugins"])
    probe = install_batchfix(env["plugins"])
    total = 5000
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out = env["out"] / "r.txt"
    probe_rule(env["data"], "r1", "SELECT n FROM demo", out)
    loader = loader_for(processes, env, extra="batch: {max_records: 100, linger_ms: 2}\n")
    for plugin in ("seqsrc", "batchfix"):
        assert loader.wait_for("plugin.running", plugin=plugin)["capabilities"] == {"batch": 1, "ackWindow": 1024}
    wait_until(
        lambda: len(probed(out)) >= total,
        timeout=WAIT_S,
        what=f"{total} records",
        detail=lambda: f"{len(probed(out))} arrived; loader output:\n{''.join(loader.raw[-40:])}",
    )
    # batched or not, every message is what eKuiper sends: the array of one result's rows
    assert [m for m, _ in probed_messages(out)] == [[{"n": n}] for n in range(1, total + 1)]
    sizes = noted(probe, "batches.txt")
    assert sum(sizes) <= total and max(sizes) <= 100 and max(sizes) > 1, sizes


def test_a_lone_record_crosses_the_loader_within_the_linger(processes, env):
    probe = install_batchfix(env["plugins"])
    stamp_config(env["etc"], count=7, interval_ms=250)
    stamp_stream(env["data"])
    out = env["out"] / "r.txt"
    probe_rule(env["data"], "r1", "SELECT n, t FROM st", out)
    loader_for(processes, env, extra="batch: {max_records: 10000, linger_ms: 30}\n")
    wait_until(lambda: len(probed(out)) >= 7, timeout=WAIT_S, what="7 records")
    latencies = sorted(at - record["t"] for record, at in probed(out))
    # Each record waits for the source's linger (a batch of 10000 never fills), then goes
    # straight through: the host adds no wait of its own.  The median is checked tightly,
    # the worst case loosely (a shared CI machine can stall a process now and then).
    assert latencies[0] >= 0.025, latencies
    assert latencies[3] < 0.03 + 0.1, latencies
    assert latencies[-1] < 1.0, latencies
    assert noted(probe, "batches.txt") == []  # one record at a time reaches the sink as a plain message


def test_function_calls_are_batched_with_per_row_errors(processes, env):
    install_seqsrc(env["plugins"])
    probe = install_batchfix(env["plugins"])
    total = 3000
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out = env["out"] / "r.txt"
    probe_rule(env["data"], "r1", "SELECT n, double(n - 20) AS d FROM demo WHERE n % 3 <> 0", out)
    loader = loader_for(processes, env, extra="batch: {max_records: 128}\n")
    expected = [{"n": n, "d": (n - 20) * 2} for n in range(1, total + 1) if n % 3 and n >= 20 and n != 33]
    wait_until(lambda: len(probed(out)) >= len(expected), timeout=WAIT_S, what="all rows")
    time.sleep(0.2)
    assert [r for r, _ in probed(out)] == expected  # n < 20: negative, n = 33: 13 gives no JSON
    rows = noted(probe, "execbatch.txt")
    assert max(rows) > 1 and max(rows) <= 128 and sum(rows) <= total, rows
    assert loader.find("rule.stopped", rule="r1") == []


def test_sink_killed_mid_batch_with_acks_loses_nothing(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    total, batch, window = 400, 40, 4
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out = env["out"] / "r.jsonl"
    write_json(
        env["data"] / "rules" / "r1.json",
        {
            "id": "r1",
            "sql": "SELECT n FROM demo",
            "actions": [{"collect": {"path": str(out), "requireAck": True, "delay_ms": 5}}],
        },
    )
    extra = f"batch: {{max_records: {batch}}}\nsinks: {{ack_window: {window}}}\n"
    loader = loader_for(processes, env, extra=extra)
    first = loader.wait_for("plugin.running", plugin="collector")
    assert first["capabilities"] == {"batch": 1, "ackWindow": 1024}
    wait_until(lambda: len(collected(out)) >= 100, timeout=WAIT_S, what="100 records")
    os.kill(first["pid"], signal.SIGKILL)
    loader.wait_for("plugin.running", plugin="collector", count=2)
    wait_until(lambda: {r["n"] for r in collected(out)} >= set(range(1, total + 1)), timeout=30, what="every record")
    numbers = [r["n"] for r in collected(out)]
    assert len(numbers) - total <= window * batch, "more duplicates than the batches in flight"
    assert loader.find("rule.stopped", rule="r1") == []


def test_sink_upgraded_mid_batch_delivers_every_record_exactly_once(processes, env):
    install_seqsrc(env["plugins"])
    install_batchfix(env["plugins"])
    total = 300
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out = env["out"] / "r.txt"
    write_json(
        env["data"] / "rules" / "r1.json",
        {
            "id": "r1",
            "sql": "SELECT n FROM demo",
            "actions": [{"probe": {"path": str(out), "requireAck": True, "delay_ms": 5}}],
        },
    )
    loader = loader_for(processes, env)
    wait_until(lambda: len(probed(out)) >= 60, timeout=WAIT_S, what="60 records")
    install_batchfix(env["plugins"], version="v2.0.0")  # SIGTERM to the old process mid-batch
    loader.wait_for("plugin.updated", plugin="batchfix", timeout=15)
    wait_until(
        lambda: len(probed(out)) >= total,
        timeout=30,
        what="every record",
        detail=lambda: f"{len(probed(out))} arrived; loader output:\n{''.join(loader.raw[-60:])}",
    )
    time.sleep(0.3)
    assert [r["n"] for r, _ in probed(out)] == list(range(1, total + 1)), "".join(loader.raw[-80:])


def test_batching_disabled_gives_the_plain_protocol(processes, env):
    install_seqsrc(env["plugins"])
    probe = install_batchfix(env["plugins"])
    total = 500
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out = env["out"] / "r.txt"
    probe_rule(env["data"], "r1", "SELECT n, double(n) AS d FROM demo", out)
    loader = loader_for(processes, env, extra="batch: {enabled: false}\n")
    for plugin in ("seqsrc", "batchfix"):
        assert loader.wait_for("plugin.running", plugin=plugin)["capabilities"] == {"ackWindow": 1024}
    wait_until(lambda: len(probed(out)) >= total - 1, timeout=WAIT_S, what="all rows")  # 13 gives no JSON
    assert [r["n"] for r, _ in probed(out)] == [n for n in range(1, total + 1) if n != 13]
    assert noted(probe, "batches.txt") == [] and noted(probe, "execbatch.txt") == []


def test_ekuiper_sdk_plugin_gets_no_batches_when_the_host_batches(processes, env, tmp_path):
    """An eKuiper SDK plugin (never declares batches) next to sdk plugins that do, under one loader."""
    token = uuid.uuid4().hex[:10]
    ek_name, ek_func = f"ekb{token}", f"ekadd{token}"
    python = venv_dir(EKUIPER_VERSION) / "bin" / "python"
    if not python.exists():
        from tests.support.ekuiper_env import ensure_ekuiper_python

        ensure_ekuiper_python()
    folder = env["plugins"] / ek_name
    folder.mkdir()
    source = (FIXTURES.parent / "ekuiper_plugin" / "ekcompat.py").read_text()
    source = source.replace('PLUGIN_NAME = "ekcompat"', f'PLUGIN_NAME = "{ek_name}"')
    source = source.replace('FUNCTION_NAME = "ekadd"', f'FUNCTION_NAME = "{ek_func}"')
    (folder / f"{ek_name}.py").write_text(source)
    write_json(
        folder / f"{ek_name}.json",
        {
            "version": "v1.0.0",
            "language": "python",
            "executable": f"{ek_name}.py",
            "sources": ["ekcount"],
            "sinks": ["ekrecord"],
            "functions": [ek_func],
            "virtualEnvType": "venv",
            "env": str(venv_dir(EKUIPER_VERSION)),
        },
    )
    # Our sdk source in a uniquely named folder: eKuiper's SDK needs the IPC directory /tmp.
    shutil.copytree(install_seqsrc(env["plugins"]), env["plugins"] / f"seq{token}")
    shutil.rmtree(env["plugins"] / "seqsrc")
    os.rename(env["plugins"] / f"seq{token}" / "seqsrc.json", env["plugins"] / f"seq{token}" / f"seq{token}.json")
    total = 2000
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out, single = env["out"] / "ek.jsonl", env["out"] / "ek-single.jsonl"
    rule_id = f"ekr{token}"
    write_json(
        env["data"] / "rules" / f"{rule_id}.json",
        {
            "id": rule_id,
            "sql": f"SELECT n, {ek_func}(n, 1000) AS s FROM demo",
            "actions": [
                {"ekrecord": {"path": str(out), "requireAck": True}},
                {"ekrecord": {"path": str(single), "sendSingle": True, "fields": ["n"]}},
            ],
        },
    )
    env = {**env, "ipc": Path("/tmp")}
    try:
        loader = loader_for(processes, env)
        assert loader.wait_for("plugin.running", plugin=f"seq{token}", timeout=20)["capabilities"] == {
            "batch": 1,
            "ackWindow": 1024,
        }
        assert loader.wait_for("plugin.running", plugin=ek_name, timeout=20)["capabilities"] == {}
        wait_until(lambda: len(collected(out)) >= total, timeout=WAIT_S, what="all records at the eKuiper sink")
        time.sleep(0.2)
        # One message per collect, the JSON array of one result, as eKuiper sends it: never a batch.
        assert sink_messages(out) == [[{"n": n, "s": {"sum": n + 1000, "rule": rule_id}}] for n in range(1, total + 1)]
        wait_until(lambda: len(sink_messages(single)) >= total, timeout=WAIT_S, what="all rows at the sendSingle sink")
        assert sink_messages(single) == [{"n": n} for n in range(1, total + 1)]  # sendSingle: objects
        assert loader.find("rule.stopped", rule=rule_id) == []
    finally:
        processes.cleanup()
        for leftover in glob.glob(f"/tmp/*{token}*"):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                os.unlink(leftover)
