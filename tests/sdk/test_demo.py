"""The bundled demo plugin, served to a host and run through the debug runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.sdk_host import control, ext_arg, func_meta, launch, recv_json

DEMO = Path(__file__).resolve().parents[2] / "plugins" / "portable" / "demo"
DEMO_PY = DEMO / "demo.py"


def test_manifest_lists_the_symbols_the_program_serves() -> None:
    manifest = json.loads((DEMO / "demo.json").read_text())
    assert manifest == {
        "version": "v1.0.0",
        "language": "python",
        "executable": "demo.py",
        "sources": ["counter"],
        "sinks": ["print"],
        "functions": ["revert"],
    }
    conf = yaml.safe_load((DEMO / "sources" / "counter.yaml").read_text())
    assert list(conf) == ["default", "fast"]
    assert conf["default"]["interval"] == 1000 and conf["fast"]["interval"] < 1000


def test_demo_serves_counter_print_and_revert(harness) -> None:
    host = harness.control_host("demo")
    proc = launch(
        harness.processes,
        ext_arg(harness.ipc_dir, plugin_name="demo"),
        harness.ipc_dir,
        program=DEMO_PY,
        stdout=subprocess.PIPE,
    )
    host.wait_handshake()

    pull = harness.pull("r_src_0.ipc")
    counter = control("counter", "source", "r", "src", config={"interval": 5, "name": "fast"})
    assert host.command("start", counter) == "ok"
    assert [recv_json(pull)["message"] for _ in range(3)] == [{"n": n, "name": "fast"} for n in (1, 2, 3)]
    assert host.command("stop", counter) == "ok"
    assert "interval must be a positive" in host.command(
        "start", control("counter", "source", "r", "bad", config={"interval": 0})
    )

    ack = harness.pull("r_snk_0_ack.ipc")
    assert host.command("start", control("print", "sink", "r", "snk", config={"requireAck": True})) == "ok"
    push = harness.push("r_snk_0.ipc")
    push.send(b'{"hello": "world"}')
    assert recv_json(ack) == {}
    assert proc.stdout.readline() == b'{"hello": "world"}\n'

    fn = harness.function_host("revert")
    assert host.command("start", control("revert", "func")) == "ok"
    fn.wait_handshake()
    assert fn.invoke("Validate", ["a", "b"]) == {"state": False, "result": "revert takes exactly 1 argument, got 2"}
    assert fn.invoke("Exec", ["hello", func_meta()]) == {"state": True, "result": "olleh"}


def debug(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sdk.debug", str(DEMO_PY), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_debug_runner_source_prints_records() -> None:
    result = debug("source", "counter", "--datasource", "t1", "--conf", '{"interval": 10}', "--count", "3")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [{"message": {"n": n, "name": "t1"}, "meta": None} for n in (1, 2, 3)]


def test_debug_runner_sink_reads_stdin_and_shows_acks() -> None:
    result = debug("sink", "print", "--conf", '{"requireAck": true, "prefix": "> "}', stdin='{"a": 1}\n\n[{"b": 2}]\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['> {"a": 1}', '> [{"b": 2}]']
    assert [line for line in result.stderr.splitlines() if line.startswith("ack")] == ["ack {}", "ack {}"]


def test_debug_runner_function_prints_replies() -> None:
    result = debug("function", "revert", "--args", '["abc"]', "--args", '["a", "b"]')
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert replies == [
        {"call": "IsAggregate", "args": None, "reply": {"state": True, "result": False}},
        {"call": "Validate", "args": ["abc"], "reply": {"state": True, "result": ""}},
        {"call": "Exec", "args": ["abc"], "reply": {"state": True, "result": "cba"}},
        {
            "call": "Validate",
            "args": ["a", "b"],
            "reply": {"state": False, "result": "revert takes exactly 1 argument, got 2"},
        },
        {"call": "Exec", "args": ["a", "b"], "reply": {"state": True, "result": "a"}},
    ]


def test_debug_runner_names_a_missing_symbol() -> None:
    result = debug("source", "nope")
    assert result.returncode == 2
    assert "plugin demo has no source named 'nope' (it has: counter)" in result.stderr
