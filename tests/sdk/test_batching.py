"""The sdk's side of the batching extension, driven by raw pynng host sockets.

Offered (``portableLoader.batch``), a plugin declares it in its handshakes,
its sources send ``{"batch": [[message, meta], ...]}`` flushed by size, by
linger, before an error and when the source finishes; its sinks split
``#batch <n>`` messages into one ``collect`` per record and send one ack per
batch; its functions answer ``ExecBatch``.  Not offered, nothing changes.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pynng
import pytest

from sdk.args import BatchOffer, parse_object
from tests.support.sdk_host import control, ext_arg, func_meta, launch, recv_json

BATCHFIX = Path(__file__).resolve().parents[1] / "fixtures" / "rules" / "batchfix.py"


def batch_arg(harness, max_records: int = 256, linger_ms: float = 2) -> str:
    return ext_arg(harness.ipc_dir, batch={"maxRecords": max_records, "lingerMs": linger_ms})


def start_plugin(harness, arg: str | None, program: Path | None = None):
    """Control host + a plugin process started with ``arg``; returns (host, proc, first handshake)."""
    host = harness.control_host()
    kwargs = {}
    if program is not None:  # a copy in the test's own folder: the fixture writes files next to itself
        copy = harness.ipc_dir / program.name
        shutil.copy(program, copy)
        kwargs["program"] = copy
    proc = launch(harness.processes, arg, harness.ipc_dir, **kwargs)
    first = host.wait_handshake()
    return host, proc, first


def recv_until(pull: pynng.Pull0, count: int) -> list[dict]:
    """Raw messages until ``count`` records arrived (batches count their records)."""
    messages, records = [], 0
    while records < count:
        message = recv_json(pull)
        messages.append(message)
        records += len(message["batch"]) if "batch" in message else 1
    return messages


# --- the offer and the handshake --------------------------------------------


def test_offer_is_parsed_and_a_bad_one_is_declined():
    ext = {"protocol": 1, "batch": {"maxRecords": 100, "lingerMs": 1.5}}
    assert parse_object({"portableLoader": ext}).batch == BatchOffer(100, 1.5)
    assert parse_object({"portableLoader": ext}).capabilities == {"batch": 1, "ackWindow": 1024}
    for bad in (
        {"maxRecords": 0, "lingerMs": 1},
        {"maxRecords": 10},
        {"maxRecords": True, "lingerMs": 1},
        {"maxRecords": 10, "lingerMs": -1},
        "yes",
    ):
        args = parse_object({"portableLoader": {"protocol": 1, "batch": bad}})
        assert args.batch is None and args.capabilities == {"ackWindow": 1024}
    # Batching only travels inside our extension.
    assert parse_object({"batch": {"maxRecords": 100, "lingerMs": 1}}).batch is None


def test_handshakes_declare_batch_only_when_offered(harness):
    host, _, first = start_plugin(harness, batch_arg(harness))
    assert first == b'handshake {"batch":1,"ackWindow":1024}'
    fn = harness.function_host("concat")
    assert host.command("start", control("concat", "func")) == "ok"
    assert fn.wait_handshake() == b'handshake {"batch":1,"ackWindow":1024}'


def test_without_the_batch_offer_handshakes_declare_only_the_ack_window(harness):
    host, _, first = start_plugin(harness, ext_arg(harness.ipc_dir))
    assert first == b'handshake {"ackWindow":1024}'
    fn = harness.function_host("concat")
    assert host.command("start", control("concat", "func")) == "ok"
    assert fn.wait_handshake() == b'handshake {"ackWindow":1024}'


def test_without_the_extension_handshakes_are_plain():
    """Under eKuiper (no ``portableLoader`` in the argument) the sdk declares nothing at all."""
    assert parse_object({"sendTimeout": 1000}).capabilities == {}
    assert parse_object({"portableLoader": {"protocol": 0}}).capabilities == {}


# --- sources -----------------------------------------------------------------


def test_source_batches_flush_by_size_and_when_the_source_finishes_in_order(harness):
    host, _, _ = start_plugin(harness, batch_arg(harness, max_records=64, linger_ms=5000))
    pull = harness.pull("rule1_op1_0.ipc")
    assert host.command("start", control("seq", "source", config={"count": 1000}, datasource="d")) == "ok"
    messages = recv_until(pull, 1000)
    # The linger (5 s) never expired: full batches by size, the rest when open() returned.
    assert [len(m["batch"]) for m in messages] == [64] * 15 + [40]
    records = [pair for m in messages for pair in m["batch"]]
    assert records == [[{"i": k, "ds": "d"}, {"k": k}] for k in range(1000)]


def test_a_lone_record_is_sent_after_the_linger(harness):
    host, _, _ = start_plugin(harness, batch_arg(harness, max_records=1000, linger_ms=60), program=BATCHFIX)
    pull = harness.pull("rule1_op1_0.ipc")
    assert host.command("start", control("stamp", "source", config={"count": 5, "interval_ms": 200})) == "ok"
    latencies = []
    for n in range(1, 6):
        message = recv_json(pull)
        arrived = time.monotonic()
        [[record, meta]] = message["batch"]
        assert record["n"] == n and meta == {"seq": n}
        latencies.append(arrived - record["t"])
    latencies.sort()
    # Each record waited for the linger (nothing else would send it), and not much longer
    # (median checked tightly, the worst case loosely: CI machines stall now and then).
    assert latencies[0] >= 0.055, latencies
    assert latencies[2] <= 0.06 + 0.05, latencies
    assert latencies[-1] < 1.0, latencies


def test_an_error_sends_the_records_before_it_at_once(harness):
    host, _, _ = start_plugin(harness, batch_arg(harness, max_records=1000, linger_ms=10000), program=BATCHFIX)
    pull = harness.pull("rule1_op1_0.ipc", timeout_ms=2000)
    ctrl = control("stamp", "source", config={"count": 5, "error": "ran dry"})
    started = time.monotonic()
    assert host.command("start", ctrl) == "ok"
    batch, error = recv_json(pull), recv_json(pull)
    assert time.monotonic() - started < 2  # well before the 10 s linger
    assert [pair[0]["n"] for pair in batch["batch"]] == [1, 2, 3, 4, 5]
    assert error == {"error": "ran dry"}


def test_records_buffered_at_stop_are_sent(harness):
    host, _, _ = start_plugin(harness, batch_arg(harness, max_records=1000, linger_ms=10000), program=BATCHFIX)
    pull = harness.pull("rule1_op1_0.ipc", timeout_ms=2000)
    ctrl = control("stamp", "source", config={"count": 7})
    assert host.command("start", ctrl) == "ok"
    time.sleep(0.3)
    with pytest.raises(pynng.Timeout):  # the linger is far away: nothing was sent yet
        _recv_now(pull)
    assert host.command("stop", ctrl) == "ok"
    assert [pair[0]["n"] for pair in recv_json(pull)["batch"]] == list(range(1, 8))


def _recv_now(pull: pynng.Pull0) -> bytes:
    pull.recv_timeout = 100
    try:
        return pull.recv()
    finally:
        pull.recv_timeout = 2000


def test_without_the_offer_a_source_sends_one_plain_message_per_record(harness):
    host, _, _ = start_plugin(harness, ext_arg(harness.ipc_dir))
    pull = harness.pull("rule1_op1_0.ipc")
    assert host.command("start", control("seq", "source", config={"count": 300})) == "ok"
    messages = [recv_json(pull) for _ in range(300)]
    assert messages == [{"message": {"i": k, "ds": ""}, "meta": {"k": k}} for k in range(300)]


# --- sinks -------------------------------------------------------------------


def start_sink(harness, arg: str, mode: str, require_ack: bool = True):
    host, proc, _ = start_plugin(harness, arg)
    out = harness.ipc_dir / "out.txt"
    ack = harness.pull("rule1_op1_0_ack.ipc", timeout_ms=3000)
    ctrl = control("collect", "sink", config={"mode": mode, "out": str(out), "requireAck": require_ack})
    assert host.command("start", ctrl) == "ok"
    return harness.push("rule1_op1_0.ipc"), ack, out, proc


def batch_message(*records: bytes) -> bytes:
    return b"#batch %d\n" % len(records) + b"\n".join(records)


def assert_no_more_acks(ack: pynng.Pull0) -> None:
    ack.recv_timeout = 300
    with pytest.raises(pynng.Timeout):
        ack.recv()


@pytest.mark.parametrize("mode", ["manual", "auto", "double"])
def test_a_batch_is_collected_record_by_record_with_one_ack(harness, mode):
    push, ack, out, _ = start_sink(harness, batch_arg(harness), mode)
    records = [b'{"a":1}', b'{"b":"x\\ny"}', '{"c":"\u00e9"}'.encode()]
    push.send(batch_message(*records))
    assert recv_json(ack) == {}
    push.send(b'{"plain":1}')  # plain messages still work
    assert recv_json(ack) == {}
    push.send(batch_message(b'{"d":4}', b'{"e":5}'))
    assert recv_json(ack) == {}
    assert_no_more_acks(ack)
    assert out.read_bytes().splitlines() == [*records, b'{"plain":1}', b'{"d":4}', b'{"e":5}']


def test_a_failed_record_makes_one_error_ack_for_its_batch(harness):
    push, ack, out, proc = start_sink(harness, batch_arg(harness), "fail")
    push.send(batch_message(b'{"ok":1}', b'{"fail":2}', b'{"ok":3}', b'{"fail":4}'))
    assert recv_json(ack) == {
        "error": '2 of 4 records failed; first: record 1: ValueError: cannot deliver {"fail":2}',
        "failed": 2,
    }
    push.send(batch_message(b'{"ok":5}', b'{"ok":6}'))
    assert recv_json(ack) == {}
    assert_no_more_acks(ack)
    # Every record was handed to collect, failed ones included (they raised after writing).
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"ok": 1},
        {"fail": 2},
        {"ok": 3},
        {"fail": 4},
        {"ok": 5},
        {"ok": 6},
    ]
    assert proc.poll() is None


def test_a_malformed_batch_is_refused_with_an_error_ack(harness):
    push, ack, out, _ = start_sink(harness, batch_arg(harness), "auto")
    push.send(b"#batch 3\n{}\n{}")
    assert "bad batch message" in recv_json(ack)["error"]
    assert not out.exists()


def test_a_sink_stopped_mid_batch_acks_the_records_it_handled(harness):
    host, proc, _ = start_plugin(harness, batch_arg(harness), program=BATCHFIX)
    out = harness.ipc_dir / "probe.txt"
    ack = harness.pull("rule1_op1_0_ack.ipc", timeout_ms=3000)
    ctrl = control("probe", "sink", config={"path": str(out), "delay_ms": 20, "requireAck": True})
    assert host.command("start", ctrl) == "ok"
    push = harness.push("rule1_op1_0.ipc")
    push.send(batch_message(*[b'{"n":%d}' % n for n in range(50)]))  # about 1 s of work
    time.sleep(0.3)
    assert host.command("stop", ctrl) == "ok"
    reply = recv_json(ack)
    written = [json.loads(line.split("\t")[0])["n"] for line in out.read_text().splitlines()]
    assert set(reply) == {"done"} and 5 <= reply["done"] < 50
    assert written == list(range(reply["done"]))  # exactly the records it said it handled
    assert proc.poll() is None


def test_without_require_ack_a_batch_gets_no_ack(harness):
    push, ack, out, _ = start_sink(harness, batch_arg(harness), "manual", require_ack=False)
    push.send(batch_message(b'{"i":0}', b'{"i":1}'))
    push.send(batch_message(b'{"i":2}'))
    assert_no_more_acks(ack)
    assert out.read_text().splitlines() == ['{"i":0}', '{"i":1}', '{"i":2}']


def test_without_the_offer_a_batch_shape_is_just_a_message(harness):
    push, ack, out, _ = start_sink(harness, ext_arg(harness.ipc_dir), "auto")
    message = batch_message(b'{"i":0}', b'{"i":1}')
    push.send(message)
    assert recv_json(ack) == {}
    assert out.read_bytes() == message + b"\n"


# --- functions ---------------------------------------------------------------


def start_function(harness, arg: str, symbol: str = "double", program: Path | None = BATCHFIX):
    host, _, _ = start_plugin(harness, arg, program=program)
    fn = harness.function_host(symbol)
    assert host.command("start", control(symbol, "func")) == "ok"
    fn.wait_handshake()
    return fn


def test_exec_batch_answers_every_row_and_one_failure_does_not_fail_the_others(harness):
    fn = start_function(harness, batch_arg(harness))
    reply = fn.invoke("ExecBatch", [[1], [-2], [3], [13], [None], "oops", func_meta()])
    assert reply == {
        "state": True,
        "result": {
            "values": [2, None, 6, None, None, None],
            "errors": [
                [1, "double: ValueError: negative: -2"],
                [3, "double: result is not JSON: TypeError: Object of type object is not JSON serializable"],
                [5, "double: TypeError: ExecBatch row 5 is not a list of arguments"],
            ],
        },
    }
    # Exec is still there, and ExecBatch without a meta string is refused as a whole.
    assert fn.invoke("Exec", [4, func_meta()]) == {"state": True, "result": 8}
    assert fn.invoke("ExecBatch", [[1], [2]])["state"] is False


def test_exec_batch_contexts_carry_the_calling_rule(harness):
    fn = start_function(harness, batch_arg(harness), symbol="concat", program=None)
    reply = fn.invoke("ExecBatch", [["a", 1], ["b"], func_meta("r9", "o2")])
    assert reply["result"]["values"] == [
        {"joined": "a1", "rule": "r9", "op": "o2"},
        {"joined": "b", "rule": "r9", "op": "o2"},
    ]


def test_without_the_offer_exec_batch_is_an_unknown_call(harness):
    fn = start_function(harness, ext_arg(harness.ipc_dir))
    reply = fn.invoke("ExecBatch", [[1], [2], func_meta()])
    assert reply["state"] is False and "unknown function call 'ExecBatch'" in reply["result"]
