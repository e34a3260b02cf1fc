"""Every long-running task survives its own exceptions (and finding 7).

Each test injects an exception into one task (the periodic rescan, a
debouncer's action, the watcher's event handler, a plugin's control reader,
a rule's worker thread) and checks that it logs one ``task.failed`` event
with the traceback and then carries on doing its job.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pynng

from loader.app.changes import Debouncer, PeriodicRescan, WatchedFolder
from loader.app.watcher import FolderWatcher, json_file_name_of
from loader.dataplane.metrics import NodeMetrics
from loader.rules.pipeline import RulePipeline
from loader.rules.sql import compile_query, parse_select
from loader.wire import control as control_module
from loader.wire.control import ControlChannel
from tests.support.loader_process import RAW_PLUGIN, make_plugin, start_loader


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


async def _await(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class FailOnce:
    """Raises RuntimeError on its first call, then does what it wraps."""

    def __init__(self, then=lambda *a, **k: None) -> None:
        self.calls = 0
        self.then = then

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("injected failure")
        return self.then(*args, **kwargs)


def _assert_one_failure(events, task: str) -> dict:
    failed = [e for e in events("task.failed") if e["task"] == task]
    assert len(failed) == 1, failed
    assert failed[0]["error"] == "RuntimeError: injected failure"
    assert "Traceback" in failed[0]["exception"]
    return failed[0]


def test_rescan_survives_an_exception(tmp_path, log_lines):
    async def passes() -> int:
        calls = FailOnce()

        async def rescan_all() -> None:
            calls()

        folder = WatchedFolder("plugins", tmp_path, _append, rescan_all, lambda: 0.01, [PeriodicRescan(lambda: 0.01)])
        folder.start()
        await _await(lambda: calls.calls >= 3)
        folder.stop()
        return calls.calls

    assert asyncio.run(passes()) >= 3
    failure = _assert_one_failure(log_lines, "rescan")
    assert failure["retry_in_s"] == 0.1


def test_debouncer_survives_and_retries_the_name(log_lines):
    done: list[str] = []

    async def run() -> None:
        action = FailOnce(lambda name: done.append(name))

        async def act(name: str) -> None:
            action(name)

        debouncer = Debouncer(0.01, act)
        debouncer.poke("p1")
        await _await(lambda: "p1" in done)  # retried after the failure
        debouncer.poke("p2")
        await _await(lambda: "p2" in done)  # and later pokes still work
        debouncer.cancel()

    asyncio.run(run())
    assert _assert_one_failure(log_lines, "debouncer")["name"] == "p1"


def test_watcher_handler_survives_an_exception(tmp_path, log_lines):
    names: list[str] = []
    name_of = FailOnce(json_file_name_of)

    async def run() -> None:
        watcher = WatchedFolder(
            "rules",
            tmp_path,
            lambda name: _append(names, name),
            _no_rescan,
            lambda: 0.01,
            [FolderWatcher(tmp_path, name_of)],
        )
        watcher.start()
        try:
            (tmp_path / "first.json").write_text("{}")
            await _await(lambda: name_of.calls >= 1)
            await asyncio.sleep(0.2)
            (tmp_path / "second.json").write_text("{}")
            await _await(lambda: "second" in names)
        finally:
            watcher.stop()

    asyncio.run(run())
    _assert_one_failure(log_lines, "watcher")


async def _append(names: list[str], name: str) -> None:
    names.append(name)


async def _no_rescan() -> None:
    raise AssertionError("no rescan runs in this test")


def test_control_reader_survives_an_exception(ipc_dir, log_lines, monkeypatch):
    monkeypatch.setattr(control_module, "decode_capabilities", FailOnce(lambda message: {}))

    async def run() -> None:
        channel = ControlChannel(ipc_dir / "plugin_x.ipc", "x")
        await channel.open()
        peer = pynng.Req0(resend_time=0)
        try:
            peer.dial(f"ipc://{ipc_dir}/plugin_x.ipc", block=True)
            await peer.asend(b"handshake")  # the reader fails on this one
            await _await(lambda: log_lines("task.failed"))
            await asyncio.sleep(0.2)  # the backoff
            await peer.asend(b"handshake")  # a new request: the reader is still there
            await channel.wait_handshake(5)
            command = asyncio.create_task(channel.command("start", {"symbolName": "s"}, 5))
            assert json.loads(await peer.arecv())["cmd"] == "start"
            await peer.asend(b"ok")
            await command
        finally:
            peer.close()
            await channel.close()

    asyncio.run(run())
    assert _assert_one_failure(log_lines, "control_reader")["plugin"] == "x"


class _FlakySink:
    def __init__(self) -> None:
        self.metrics = NodeMetrics("sink_flaky_0_0")
        self.received: list = []
        self.deliver_many = FailOnce(self.received.extend)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def settle(self) -> None:
        pass


def test_rule_worker_survives_an_exception(log_lines):
    sink = _FlakySink()
    query = compile_query(parse_select("SELECT n FROM demo"), lambda name, index: None)
    pipeline = RulePipeline("r1", "demo", query, [sink])

    async def run() -> None:
        await pipeline.start()
        pipeline.offer([{"n": 1}])
        await _await(lambda: sink.deliver_many.calls >= 1)
        pipeline.offer([{"n": 2}])
        await _await(lambda: sink.received == [[{"n": 2}]])
        await pipeline.stop()

    asyncio.run(run())
    failure = _assert_one_failure(log_lines, "rule_worker")
    assert failure["rule"] == "r1" and failure["dropped"] == 1
    assert pipeline.op_metrics.exceptions == 1


DEEP_HANDSHAKE = """
import sys, json, time, pynng
ext = json.loads(sys.argv[1])["portableLoader"]
sock = pynng.Req0(resend_time=0)
sock.dial(f"ipc://{ext['ipcDir']}/plugin_{ext['pluginName']}.ipc", block=True)
print("hostile plugin sending garbage", flush=True)
for message in (b"handshake " + b"[" * 100000 + b"]" * 100000, b"\\xff\\x00garbage",
                b"handshake {\\"batch\\": " + b"{\\"a\\":" * 5000 + b"1" + b"}" * 5001, b"h" * 100000):
    sock.send(message)
    time.sleep(0.05)
time.sleep(3600)
"""


def test_deep_handshake_never_kills_the_control_reader(processes, tmp_path, ipc_dir):
    """Finding 7: the channel outlives the process, so its reader must outlive any message."""
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "other")
    folder = make_plugin(plugins, "hostile")
    (folder / "main.py").write_text(DEEP_HANDSHAKE)
    loader = start_loader(
        processes, plugins, ipc_dir, tmp_path / "data", extra_config="supervisor: {handshake_timeout_s: 3}\n"
    )
    loader.wait_for("plugin.output", plugin="hostile", line="hostile plugin sending garbage")
    loader.wait_for("plugin.running", plugin="other")
    first = loader.wait_for("plugin.spawned", plugin="hostile")
    # the fixed version replaces it and handshakes normally on the same channel
    shutil.copy(RAW_PLUGIN, folder / "main.py")
    running = loader.wait_for("plugin.updated", plugin="hostile", timeout=20)
    assert running["pid"] != first["pid"]
    assert not loader.find("plugin.start_failed", plugin="hostile")
    assert not [e for e in loader.find("task.failed") if e.get("task") == "control_reader"]
    loader.wait_for("plugin.running", plugin="other")
