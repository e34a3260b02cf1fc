"""SourceChannel against a source plugin written with raw pynng.

The peer behaves like eKuiper's SDK on a source data channel: a PUSH that
dials the host's PULL and sends ``{"message", "meta"}`` or ``{"error"}``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loader.wire.codec import DataChannelClosed
from loader.wire.source import SourceChannel, SourceTimeout

PEER = r"""
import json, os, sys, time
import pynng

url, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sock = pynng.Push0(send_timeout=5000)
sock.dial(url, block=True)
print("ready", flush=True)
pid = os.getpid()
for n in range(count):
    sock.send(json.dumps({"message": {"n": n, "pid": pid}, "meta": {"seq": n}}).encode())
    if interval:
        time.sleep(interval)
sock.send(json.dumps({"error": "source ran dry"}).encode())
sock.send(b"not json")
time.sleep(60)
"""


def start_peer(processes, path: Path, count: int, interval: float = 0.0) -> subprocess.Popen:
    proc = processes.popen(
        [sys.executable, "-u", "-c", PEER, f"ipc://{path}", str(count), str(interval)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"source peer failed: {line}{proc.stdout.read()}"
    return proc


@pytest.fixture
def channel(ipc_dir: Path):
    ch = SourceChannel.for_instance(ipc_dir, "rawsrc", "counter", "rule1", "op1", 0)
    ch.open()
    yield ch
    ch.close()


def test_records_in_order_then_error_then_garbage(channel, processes):
    assert channel.path.name == "rule1_op1_0.ipc" and channel.path.exists()
    proc = start_peer(processes, channel.path, 500)
    for n in range(500):
        item = channel.recv(timeout=5)
        assert item.error is None
        assert item.message == {"n": n, "pid": proc.pid}
        assert item.meta == {"seq": n}
    assert channel.recv(timeout=5).error == "source ran dry"
    garbage = channel.recv(timeout=5)
    assert garbage.message is None and "invalid JSON" in garbage.error


def test_recv_batch_takes_what_is_queued(channel, processes):
    start_peer(processes, channel.path, 200)
    seen: list[int] = []
    batches = 0
    while len(seen) < 200:
        time.sleep(0.01)  # let messages queue up
        batch = channel.recv_batch(64, timeout=5)
        assert 1 <= len(batch) <= 64
        seen.extend(item.message["n"] for item in batch if item.error is None)
        batches += 1
    assert seen[:200] == list(range(200))
    assert batches < 200


def test_timeout_names_plugin_and_symbol(channel):
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match="plugin rawsrc: source counter: no record within 0.2s"):
        channel.recv(timeout=0.2)
    assert time.monotonic() - started < 2


def test_channel_keeps_delivering_from_a_replacement_process(channel, processes):
    first = start_peer(processes, channel.path, 100000, interval=0.002)
    assert channel.recv(timeout=5).message["pid"] == first.pid
    first.kill()
    first.wait()
    # Drain what the first process sent before it died, then expect the new one.
    second = start_peer(processes, channel.path, 5)
    pids = set()
    while True:
        item = channel.recv(timeout=5)
        if item.error is not None:
            break
        pids.add(item.message["pid"])
    assert second.pid in pids
    assert channel.path.exists()


def test_close_wakes_a_blocked_recv_and_removes_the_socket(channel):
    caught: list[BaseException] = []

    def wait() -> None:
        try:
            channel.recv()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            caught.append(exc)

    reader = threading.Thread(target=wait)
    reader.start()
    time.sleep(0.1)
    channel.close()
    reader.join(timeout=5)
    assert len(caught) == 1 and isinstance(caught[0], DataChannelClosed)
    assert not channel.path.exists()


def test_iteration_ends_when_closed(channel, processes):
    start_peer(processes, channel.path, 3)
    items = []
    for item in channel:
        items.append(item)
        if len(items) == 4:
            channel.close()
    assert [i.message["n"] for i in items[:3]] == [0, 1, 2]
    assert items[3].error == "source ran dry"
