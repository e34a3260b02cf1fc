"""FunctionChannel against a function plugin written with raw pynng.

The peer behaves like eKuiper's Python SDK on the function channel: a REQ
that dials, sends ``handshake``, answers each call with a new request, and
re-sends ``handshake`` when it has waited ``keepalive`` ms for a call.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loader.wire import function as function_module
from loader.wire.codec import DataChannelClosed
from loader.wire.function import FunctionChannel, FunctionError, FunctionTimeout
from sdk.protocol.messages import exec_meta

PEER = r"""
import json, os, sys, time
import pynng

url, keepalive_ms, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = pynng.Req0(recv_timeout=keepalive_ms, resend_time=0)
sock.dial(url, block=True)
sock.send(b"handshake")
print("ready", flush=True)


def run(func, arg):
    if func == "Validate":
        return (True, "") if arg else (False, "addx needs arguments")
    if func == "IsAggregate":
        return True, False
    if func != "Exec":
        return False, "unknown func " + func
    args, meta = arg[:-1], json.loads(arg[-1])
    op = args[0]
    if op == "add":
        return True, args[1] + args[2]
    if op == "sleep":
        if mode != "nosleep":
            time.sleep(args[1])
        return True, ["slept", args[1]]
    if op == "pid":
        return True, os.getpid()
    if op == "meta":
        return True, meta
    return False, "boom: " + op


while True:
    try:
        request = json.loads(sock.recv())
    except pynng.Timeout:
        sock.send(b"handshake")
        continue
    state, result = run(request["func"], request["arg"])
    sock.send(json.dumps({"state": state, "result": result}).encode())
"""

META = exec_meta("rule1", "op1", 0, 0)


def start_peer(processes, path: Path, keepalive_ms: int = 5000, mode: str = "normal") -> subprocess.Popen:
    proc = processes.popen(
        [sys.executable, "-u", "-c", PEER, f"ipc://{path}", str(keepalive_ms), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"function peer failed: {line}{proc.stdout.read()}"
    return proc


@pytest.fixture
def channel(ipc_dir: Path):
    ch = FunctionChannel.for_symbol(ipc_dir, "rawfn", "addx", timeout=5.0)
    ch.open()
    yield ch
    ch.close()


def test_validate_exec_is_aggregate(channel, processes):
    start_peer(processes, channel.path)
    channel.validate([1, 2])
    with pytest.raises(FunctionError) as err:
        channel.validate([])
    assert err.value.error == "addx needs arguments"
    assert channel.exec(["add", 2, 3], META) == 5
    assert channel.exec(["meta"], META) == {"ruleId": "rule1", "opId": "op1", "instanceId": 0, "funcId": 0}
    assert channel.is_aggregate() is False
    with pytest.raises(FunctionError, match="plugin rawfn: function addx: Exec failed: boom: nope"):
        channel.exec(["nope"], META)


def test_idle_keepalives_are_drained(channel, processes):
    start_peer(processes, channel.path, keepalive_ms=200)
    assert channel.exec(["add", 1, 1], META) == 2
    time.sleep(0.5)  # keepalives at about 0.2 s and 0.4 s: the slot we hold is stale
    assert channel.exec(["add", 2, 2], META) == 4
    # The keepalives were taken either by draining before the call or as
    # handshakes answering a call sent on a stale slot (then resent).
    assert channel.handshakes + channel.resends >= 2


def test_call_lost_on_stale_slot_is_resent(channel, processes, monkeypatch):
    # Never drain: the call goes out on a slot the plugin abandoned, and the
    # handshake that follows must trigger a resend.
    monkeypatch.setattr(function_module, "STALE_SLOT_AFTER", 3600.0)
    start_peer(processes, channel.path, keepalive_ms=50)
    assert channel.exec(["add", 1, 1], META) == 2
    time.sleep(0.3)
    assert channel.exec(["add", 20, 22], META) == 42
    assert channel.resends >= 1


def test_timeout_names_plugin_and_symbol_and_late_answer_is_discarded(channel, processes):
    with pytest.raises(FunctionTimeout, match="plugin rawfn: function addx: no answer to Exec"):
        channel.exec(["add", 1, 2], META, timeout=0.2)
    start_peer(processes, channel.path)
    with pytest.raises(FunctionTimeout):
        channel.exec(["sleep", 0.5], META, timeout=0.2)
    # The late ["slept", 0.5] must not be taken for this call's answer.
    assert channel.exec(["add", 1, 2], META) == 3


def test_plugin_replaced_while_idle(channel, processes):
    first = start_peer(processes, channel.path)
    assert channel.exec(["pid"], META) == first.pid
    first.kill()
    first.wait()
    second = start_peer(processes, channel.path)
    assert channel.exec(["pid"], META) == second.pid


def test_call_in_flight_when_plugin_dies_is_resent_to_the_new_process(channel, processes):
    first = start_peer(processes, channel.path)
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(channel.exec(["sleep", 30], META)))
    caller.start()
    time.sleep(0.2)
    first.kill()
    first.wait()
    start_peer(processes, channel.path, mode="nosleep")
    caller.join(timeout=5)
    assert results == [["slept", 30]]
    assert channel.resends == 1


def test_concurrent_callers_each_get_their_own_answer(channel, processes):
    start_peer(processes, channel.path)
    errors: list[str] = []

    def worker(base: int) -> None:
        for i in range(200):
            got = channel.exec(["add", base, i], META)
            if got != base + i:
                errors.append(f"{base}+{i} gave {got}")

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []


def test_close_wakes_a_waiting_call_and_removes_the_socket(channel):
    caught: list[BaseException] = []

    def wait() -> None:
        try:
            channel.exec(["add", 1, 2], META)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            caught.append(exc)

    caller = threading.Thread(target=wait)
    caller.start()
    time.sleep(0.1)
    channel.close()
    caller.join(timeout=5)
    assert len(caught) == 1 and isinstance(caught[0], DataChannelClosed)
    assert not channel.path.exists()
    with pytest.raises(DataChannelClosed):
        channel.is_aggregate()
