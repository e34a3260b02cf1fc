"""Control channel: handshake, keepalive, the extension, command errors, SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.support.sdk_host import control, ext_arg, launch, stderr_lines


def test_handshake_then_keepalive_at_the_configured_interval(harness) -> None:
    host, proc = harness.plugin(keepalive_ms=300)
    # Hold the slot and say nothing: the plugin gives up waiting and handshakes again.
    started = time.monotonic()
    host.wait_handshake()
    first = time.monotonic() - started
    host.wait_handshake()
    assert 0.2 < first < 1.5
    assert host.handshakes == 3
    # The channel still works after keepalives.
    assert host.command("start", control("badconf", "source")).startswith("source badconf")
    assert proc.poll() is None


def test_extension_plugin_name_and_ipc_dir_are_honoured(harness) -> None:
    # The program declares "sdkfixture"; the host knows it as "renamed-dir".
    ipc = Path(harness.ipc_dir) / "sub"
    ipc.mkdir()
    host = harness.control_host("renamed-dir", ipc_dir=ipc)
    launch(harness.processes, ext_arg(ipc, plugin_name="renamed-dir"), harness.ipc_dir)
    host.wait_handshake()
    pull = harness.pull("r1_o1_0.ipc", ipc_dir=ipc)
    assert host.command("start", control("seq", "source", "r1", "o1", config={"count": 1})) == "ok"
    assert b'"i":0' in pull.recv()


def test_start_errors_are_readable_replies_and_the_plugin_keeps_serving(harness) -> None:
    host, proc = harness.plugin()
    reply = host.command("start", control("badconf", "source"))
    assert (
        reply
        == "source badconf of rule rule1 op op1 instance 0: configure failed: ValueError: interval must be positive"
    )
    assert "has no source named 'nope'" in host.command("start", control("nope", "source"))
    assert "invalid pluginType" in host.command("start", {**control("seq", "source"), "pluginType": "filter"})
    assert "not JSON" in host.call(b"garbage").decode()
    assert host.command("stop", control("seq", "source", "never-started")) == "ok"
    assert proc.poll() is None


def test_sigterm_closes_every_symbol_and_exits_zero(harness) -> None:
    host, proc = harness.plugin()
    marker = harness.ipc_dir / "closed.txt"
    harness.pull("r1_o1_0.ipc")
    harness.pull("r2_o1_0_ack.ipc")
    source = control("forever", "source", "r1", "o1", config={"marker": str(marker)})
    sink = control(
        "collect", "sink", "r2", "o1", config={"marker": str(marker), "out": "/dev/null", "requireAck": True}
    )
    assert host.command("start", source) == "ok"
    assert host.command("start", sink) == "ok"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=3) == 0
    assert time.monotonic() - started < 1.5
    assert sorted(marker.read_text().split("\n")) == ["", "collect closed", "forever closed"]
    events = [line["event"] for line in stderr_lines(harness.ipc_dir)]
    assert events[-1] == "plugin stopped"


def test_stderr_is_json_lines_with_context(harness) -> None:
    host, proc = harness.plugin()
    pull = harness.pull("rule1_op1_0.ipc")
    assert host.command("start", control("logs", "source")) == "ok"
    assert pull.recv() == b'{"message":{"is_logger":true},"meta":null}'
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=3)
    lines = stderr_lines(harness.ipc_dir)
    assert all(line["src"] == "sdk" and line["level"] in ("debug", "info", "warning", "error") for line in lines)
    hello = [line for line in lines if line["event"] == "hello from the plugin"]
    assert hello == [
        {
            "src": "sdk",
            "level": "info",
            "event": "hello from the plugin",
            "symbol": "logs",
            "rule": "rule1",
            "op": "op1",
            "instance": 0,
        }
    ]
    started = [line for line in lines if line["event"] == "source started"]
    assert started and started[0]["symbol"] == "logs" and started[0]["rule"] == "rule1"


def test_no_host_exits_with_a_clear_error(harness) -> None:
    # The plugin retries the dial for about 5 s, as eKuiper's SDK does, then gives up.
    proc = launch(harness.processes, ext_arg(harness.ipc_dir, plugin_name="nobody"), harness.ipc_dir)
    assert proc.wait(timeout=10) == 1
    errors = [line for line in stderr_lines(harness.ipc_dir) if line["level"] == "error"]
    assert errors[0]["event"] == "control channel unreachable" and "PluginConfig" in errors[0]["hint"]
    assert "plugin_nobody.ipc" in errors[0]["error"]
