"""SinkChannel against a sink plugin written with raw pynng.

The peer behaves like eKuiper's SDK on a sink: PULL listens on the data
address, PUSH dials the host's ack address, and (in ``ack`` mode) each
message is written to a file, then acknowledged with ``{}`` or ``{"error"}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loader.wire.codec import DataChannelClosed
from loader.wire.sink import SinkAckError, SinkChannel, SinkTimeout

PEER = r"""
import json, os, sys, time
import pynng

data_url, ack_url, out, mode = sys.argv[1:5]
data = pynng.Pull0()
data.listen(data_url)
acks = pynng.Push0(send_timeout=5000)
acks.dial(ack_url, block=True)
print("ready", flush=True)
pid = os.getpid()
first = True
with open(out, "a") as f:
    while True:
        record = json.loads(data.recv())
        f.write(json.dumps({"pid": pid, "record": record}) + "\n")
        f.flush()
        if mode == "noack":
            continue
        if mode == "lateack" and first:
            time.sleep(0.5)
            acks.send(json.dumps({"error": "late"}).encode())
        elif isinstance(record, dict) and record.get("reject"):
            acks.send(json.dumps({"error": "rejected %s" % record["n"]}).encode())
        else:
            acks.send(b"{}")
        first = False
"""


def start_peer(processes, channel: SinkChannel, out: Path, mode: str = "ack") -> subprocess.Popen:
    proc = processes.popen(
        [sys.executable, "-u", "-c", PEER, f"ipc://{channel.data_path}", f"ipc://{channel.ack_path}", str(out), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"sink peer failed: {line}{proc.stdout.read()}"
    return proc


def received(out: Path) -> list[dict]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


def wait_received(out: Path, count: int, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(got := received(out)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


def make_channel(ipc_dir: Path, **options) -> SinkChannel:
    ch = SinkChannel.for_instance(ipc_dir, "rawsink", "recorder", "rule1", "op2", 0, **options)
    ch.open()
    return ch


def test_each_record_is_acked_and_received_in_order(ipc_dir, processes):
    ch = make_channel(ipc_dir, require_ack=True)
    out = ipc_dir / "out.jsonl"
    try:
        assert ch.ack_path.name == "rule1_op2_0_ack.ipc" and ch.ack_path.exists()
        start_peer(processes, ch, out)
        ch.connect()
        for n in range(300):
            ch.send({"n": n})
        # Acked means written: no waiting needed.
        assert [r["record"] for r in received(out)] == [{"n": n} for n in range(300)]
        ch.send([{"n": 300}, {"n": 301}])
        assert received(out)[-1]["record"] == [{"n": 300}, {"n": 301}]
    finally:
        ch.close()
    assert not ch.ack_path.exists()


def test_ack_error_carries_the_plugins_text(ipc_dir, processes):
    ch = make_channel(ipc_dir, require_ack=True)
    out = ipc_dir / "out.jsonl"
    try:
        start_peer(processes, ch, out)
        ch.connect()
        with pytest.raises(SinkAckError, match="plugin rawsink: sink recorder: .*rejected 7") as err:
            ch.send({"n": 7, "reject": True})
        assert err.value.error == "rejected 7"
        ch.send({"n": 8})
    finally:
        ch.close()


def test_without_require_ack_sends_do_not_wait(ipc_dir, processes):
    ch = make_channel(ipc_dir, require_ack=False, ack_timeout=0.1)
    out = ipc_dir / "out.jsonl"
    try:
        start_peer(processes, ch, out, mode="noack")
        ch.connect()
        started = time.monotonic()
        for n in range(50):
            ch.send({"n": n})
        assert time.monotonic() - started < 2  # 50 ack timeouts would take 5 s
        assert [r["record"]["n"] for r in wait_received(out, 50)] == list(range(50))
    finally:
        ch.close()


def test_send_times_out_when_no_plugin_listens(ipc_dir):
    ch = make_channel(ipc_dir, require_ack=True, send_timeout=0.2)
    try:
        ch.connect()
        with pytest.raises(SinkTimeout, match="plugin rawsink: sink recorder: no plugin process took"):
            ch.send({"n": 1})
    finally:
        ch.close()


def test_late_ack_is_not_taken_for_the_next_records(ipc_dir, processes):
    ch = make_channel(ipc_dir, require_ack=True, ack_timeout=0.2)
    out = ipc_dir / "out.jsonl"
    try:
        start_peer(processes, ch, out, mode="lateack")
        ch.connect()
        with pytest.raises(SinkTimeout, match="no ack within 0.2s"):
            ch.send({"n": 1})
        time.sleep(0.6)  # the late {"error": "late"} arrives meanwhile
        ch.send({"n": 2})
    finally:
        ch.close()


def test_send_resumes_with_a_replacement_process(ipc_dir, processes):
    ch = make_channel(ipc_dir, require_ack=True, send_timeout=0.3, ack_timeout=0.3)
    out = ipc_dir / "out.jsonl"
    try:
        first = start_peer(processes, ch, out)
        ch.connect()
        for n in range(10):
            ch.send({"n": n})
        first.kill()
        first.wait()
        failures = 0
        with pytest.raises(SinkTimeout):
            ch.send({"n": 10})
        second = start_peer(processes, ch, out)
        # The caller's contract: re-send an unacknowledged record until it is acked.
        for n in range(10, 20):
            while True:
                try:
                    ch.send({"n": n})
                    break
                except SinkTimeout:
                    failures += 1
                    assert failures < 20
        got = received(out)
        assert [r["record"]["n"] for r in got if r["pid"] == second.pid] == list(range(10, 20))
        assert {r["record"]["n"] for r in got} == set(range(20))
    finally:
        ch.close()


def test_send_before_connect_or_after_close_is_refused(ipc_dir):
    ch = make_channel(ipc_dir)
    with pytest.raises(DataChannelClosed, match="not open and connected"):
        ch.send({"n": 1})
    ch.close()
    with pytest.raises(DataChannelClosed):
        ch.send({"n": 1})
