"""Sinks: messages are collected as raw bytes, and with requireAck exactly one ack per message."""

from __future__ import annotations

import json

import pynng
import pytest

from tests.support.sdk_host import control, recv_json, stderr_lines
from tests.support.waiting import wait_until


def start_sink(harness, mode: str, require_ack: bool = True):
    """Host side in protocol order: ack PULL, start command, then PUSH to the sink's PULL."""
    host, proc = harness.plugin()
    out = harness.ipc_dir / "out.txt"
    marker = harness.ipc_dir / "marker"
    ack = harness.pull("rule1_op1_0_ack.ipc", timeout_ms=3000)
    config = {"mode": mode, "out": str(out), "marker": str(marker), "requireAck": require_ack}
    ctrl = control("collect", "sink", config=config)
    assert host.command("start", ctrl) == "ok"
    push = harness.push("rule1_op1_0.ipc")
    return host, proc, ctrl, push, ack, out, marker


def assert_no_more_acks(ack: pynng.Pull0) -> None:
    ack.recv_timeout = 300
    with pytest.raises(pynng.Timeout):
        ack.recv()


@pytest.mark.parametrize("mode", ["manual", "auto", "double"])
def test_each_message_is_collected_and_acked_exactly_once(harness, mode: str) -> None:
    host, _, ctrl, push, ack, out, marker = start_sink(harness, mode)
    messages = [b'{"a": 1}', b'[{"b": 2}, {"b": 3}]', '{"c": "\u00e9"}'.encode()]
    for message in messages:
        push.send(message)
        assert recv_json(ack) == {}
    assert_no_more_acks(ack)
    assert out.read_bytes() == b"".join(m + b"\n" for m in messages)
    assert host.command("stop", ctrl) == "ok"
    assert marker.read_text() == "collect closed\n"


def test_an_exception_in_collect_becomes_an_error_ack(harness) -> None:
    _, proc, _, push, ack, _, _ = start_sink(harness, "fail")
    push.send(b'{"ok": 1}')
    assert recv_json(ack) == {}
    push.send(b'{"fail": 1}')
    assert recv_json(ack) == {"error": 'ValueError: cannot deliver {"fail": 1}'}
    push.send(b'{"ok": 2}')
    assert recv_json(ack) == {}
    assert_no_more_acks(ack)
    assert proc.poll() is None


def test_without_require_ack_no_ack_is_sent(harness) -> None:
    _, _, _, push, ack, out, _ = start_sink(harness, "manual", require_ack=False)
    for i in range(3):
        push.send(json.dumps({"i": i}).encode())
    assert_no_more_acks(ack)
    assert out.read_text().splitlines() == ['{"i": 0}', '{"i": 1}', '{"i": 2}']


def test_a_second_start_for_the_same_instance_replaces_the_first(harness) -> None:
    host, _, ctrl, push, ack, out, marker = start_sink(harness, "auto")
    push.send(b'{"first": 1}')
    assert recv_json(ack) == {}
    assert host.command("start", ctrl) == "ok"  # listens again on the same address
    assert marker.read_text() == "collect closed\n"
    push.send(b'{"second": 2}')  # the host's dialer reconnects by itself
    assert recv_json(ack) == {}
    assert out.read_text().splitlines() == ['{"first": 1}', '{"second": 2}']


def test_an_ack_the_host_no_longer_takes_is_not_the_plugins_error(harness) -> None:
    """The host's ack socket gone (a rule stopping): the plugin's ack_ok times out inside the sdk, which
    logs it once as a warning; collect does not raise, and the sink goes on collecting."""
    _, _, _, push, ack, out, _ = start_sink(harness, "manual")
    ack.close()
    for message in (b'{"a": 1}', b'{"a": 2}'):
        push.send(message)
    wait_until(lambda: out.exists() and len(out.read_bytes().splitlines()) == 2, timeout=15)
    events = wait_until(
        lambda: [e for e in (line["event"] for line in stderr_lines(harness.ipc_dir)) if "ack" in e or "raised" in e],
        timeout=15,
    )
    assert events == ["ack not delivered"]
