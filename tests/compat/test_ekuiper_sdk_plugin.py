"""The loader's wire channels drive a plugin built with eKuiper's official Python SDK.

The plugin (tests/fixtures/ekuiper_plugin/ekcompat.py) imports nothing but
``ekuiper`` and runs in its own venv with the SDK's pinned pynng 0.8.1,
started the way PROTOCOL.md section 1 says.  The host side is the project's
own code: ControlChannel for start/stop, and SourceChannel, SinkChannel and
FunctionChannel for the data.

eKuiper's SDK hard-codes ``/tmp`` and derives socket names from the plugin
and function names written in its program, so each test copies the program
with unique names and uses unique rule ids; every socket file it leaves is
removed afterwards.  These tests never skip: if the SDK cannot be installed,
they fail with pip's output.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loader.wire.addresses import control_path
from loader.wire.codec import SourceItem
from loader.wire.control import ControlChannel
from loader.wire.function import FunctionChannel, FunctionError
from loader.wire.sink import SinkAckError, SinkChannel
from loader.wire.source import SourceChannel
from sdk.protocol.messages import exec_meta
from tests.support.ekuiper_env import EkuiperEnvError, ensure_ekuiper_python
from tests.support.loader_process import make_plugin
from tests.support.sinks import CountingChannel, run_sink, supervisor_for

# The first test of a fresh checkout builds the SDK venv (a pip install): allow for it.
pytestmark = pytest.mark.timeout(300)

IPC = Path("/tmp")
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ekuiper_plugin" / "ekcompat.py"
PORTABLE_CONFIG = json.dumps({"sendTimeout": 1000})
TIMEOUT = 10.0


@functools.cache
def _sdk_python() -> Path:
    return ensure_ekuiper_python()


def sdk_python() -> Path:
    """The SDK venv's interpreter; a failed build fails the test (never skips) with pip's output."""
    try:
        return _sdk_python()
    except EkuiperEnvError as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass
class EkPlugin:
    """One uniquely named copy of the fixture program, and how to run it."""

    token: str
    folder: Path
    log: Path

    @property
    def name(self) -> str:
        return f"ekc{self.token}"

    @property
    def function(self) -> str:
        return f"ekadd{self.token}"

    @property
    def program(self) -> Path:
        return self.folder / f"{self.name}.py"

    def rule(self, label: str) -> str:
        return f"ekr{self.token}{label}"

    def spawn(self, processes) -> subprocess.Popen:
        """Start it as the host does: ``<python> -u <executable> '<argJSON>'`` in its folder."""
        with self.log.open("a") as log:
            return processes.popen(
                [str(sdk_python()), "-u", self.program.name, PORTABLE_CONFIG],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else "(no output)"


@pytest.fixture
def ek_plugin(tmp_path: Path) -> Iterator[EkPlugin]:
    plugin = EkPlugin(uuid.uuid4().hex[:12], tmp_path, tmp_path / "plugin.log")
    source = FIXTURE.read_text()
    for old, new in (
        ('PLUGIN_NAME = "ekcompat"', f'PLUGIN_NAME = "{plugin.name}"'),
        ('FUNCTION_NAME = "ekadd"', f'FUNCTION_NAME = "{plugin.function}"'),
    ):
        assert old in source, f"{FIXTURE} no longer contains {old!r}"
        source = source.replace(old, new)
    plugin.program.write_text(source)
    try:
        yield plugin
    finally:
        print(f"--- output of plugin {plugin.name} ---\n{plugin.log_tail()}")
        for leftover in glob.glob(f"/tmp/*{plugin.token}*.ipc"):
            os.unlink(leftover)


def control_for(
    symbol: str, kind: str, rule: str = "", op: str = "", config: dict | None = None, datasource: str = ""
) -> dict:
    """The Control the host sends with start and stop (both datasource spellings, PROTOCOL §2)."""
    return {
        "symbolName": symbol,
        "meta": {"ruleId": rule, "opId": op, "instanceId": 0},
        "pluginType": kind,
        "dataSource": datasource,
        "datasource": datasource,
        "config": config or {},
    }


async def open_control(plugin: EkPlugin, processes) -> tuple[ControlChannel, subprocess.Popen]:
    """Listen on the control socket first, then start the process and wait for its handshake."""
    control = ControlChannel(control_path(IPC, plugin.name), plugin.name)
    await control.open()
    proc = plugin.spawn(processes)
    try:
        await control.wait_handshake(TIMEOUT)
    except TimeoutError:
        await control.close()
        pytest.fail(f"no handshake from {plugin.name}:\n{plugin.log_tail()}")
    return control, proc


def read_items(channel: SourceChannel, count: int) -> list[SourceItem]:
    return [channel.recv(timeout=TIMEOUT) for _ in range(count)]


def test_source_records_arrive_in_order(ek_plugin, processes):
    count = 3000
    rule = ek_plugin.rule("src")
    ctrl = control_for("ekcount", "source", rule, "op1", {"count": count, "errorAtEnd": True}, "topic/a")

    async def scenario() -> list[SourceItem]:
        control, _ = await open_control(ek_plugin, processes)
        source = SourceChannel.for_instance(IPC, ek_plugin.name, "ekcount", rule, "op1", 0)
        source.open()
        try:
            await control.command("start", ctrl, TIMEOUT)
            items = await asyncio.to_thread(read_items, source, count + 1)
            await control.command("stop", ctrl, TIMEOUT)
            return items
        finally:
            source.close()
            await control.close()

    items = asyncio.run(scenario())
    assert [i.message for i in items[:count]] == [{"n": n, "datasource": "topic/a"} for n in range(count)]
    assert all(i.meta == {"rule": rule} and i.error is None for i in items[:count])
    assert items[count] == SourceItem(None, None, "ekcount ran dry")


def test_sink_acks_every_record(ek_plugin, processes, tmp_path):
    count = 500
    out = tmp_path / "sink.jsonl"
    rule = ek_plugin.rule("snk")
    ctrl = control_for("ekrecord", "sink", rule, "op2", {"requireAck": True, "path": str(out)})

    def send_all(sink: SinkChannel) -> str:
        for n in range(count):
            sink.send({"n": n, "text": f"record {n}"})
        with pytest.raises(SinkAckError) as rejected:
            sink.send({"n": count, "reject": True})
        sink.send([{"n": count + 1}, {"n": count + 2}])
        return rejected.value.error

    async def scenario() -> str:
        control, _ = await open_control(ek_plugin, processes)
        sink = SinkChannel.for_instance(
            IPC, ek_plugin.name, "ekrecord", rule, "op2", 0, require_ack=True, ack_timeout=TIMEOUT
        )
        sink.open()
        try:
            await control.command("start", ctrl, TIMEOUT)
            sink.connect()
            error = await asyncio.to_thread(send_all, sink)
            await control.command("stop", ctrl, TIMEOUT)
            return error
        finally:
            sink.close()
            await control.close()

    error = asyncio.run(scenario())
    assert error == f"ekrecord rejects record {count}"
    # Every send returned after its ack, and the plugin acks after writing.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[:count] == [{"n": n, "text": f"record {n}"} for n in range(count)]
    assert lines[count:] == [[{"n": count + 1}, {"n": count + 2}]]


def test_sink_keeps_one_message_in_flight_under_a_host_with_an_ack_window(ek_plugin, processes, tmp_path):
    """The SDK declares no ack window: the loader's sink waits for each ack before the next message,
    while an sdk sink under the same settings gets 32 (tests/dataplane/test_ack_window_e2e.py)."""
    out = tmp_path / "sink.jsonl"
    folder = make_plugin(tmp_path / "plugins", ek_plugin.name, sinks=["ekrecord"])
    supervisor = supervisor_for(folder, IPC)

    async def scenario() -> CountingChannel:
        control, _ = await open_control(ek_plugin, processes)
        try:
            assert control.capabilities == {}
            return await run_sink(control, supervisor, "ekrecord", {"path": str(out)}, IPC, 300)
        finally:
            await control.close()

    channel = asyncio.run(scenario())
    assert supervisor.ack_window == 1 and channel.most_in_flight == 1
    assert [json.loads(line) for line in out.read_text().splitlines()] == [[{"n": n}] for n in range(300)]


def test_function_validate_exec_is_aggregate(ek_plugin, processes):
    rule = ek_plugin.rule("fn")
    ctrl = control_for(ek_plugin.function, "func")
    meta = exec_meta(rule, "op3", 0, 0)

    def calls(fn: FunctionChannel) -> dict:
        fn.validate([{"type": "field"}, {"type": "integer"}])
        with pytest.raises(FunctionError) as invalid:
            fn.validate([1])
        results = [fn.exec([n, 1000], meta) for n in range(200)]
        return {"invalid": invalid.value.error, "results": results, "aggregate": fn.is_aggregate()}

    async def scenario() -> dict:
        control, _ = await open_control(ek_plugin, processes)
        fn = FunctionChannel.for_symbol(IPC, ek_plugin.name, ek_plugin.function, timeout=TIMEOUT)
        fn.open()
        try:
            await control.command("start", ctrl, TIMEOUT)
            return await asyncio.to_thread(calls, fn)
        finally:
            fn.close()
            await control.close()

    got = asyncio.run(scenario())
    assert got["invalid"] == "ekadd needs exactly 2 arguments"
    assert got["results"] == [{"sum": n + 1000, "rule": rule} for n in range(200)]
    assert got["aggregate"] is False


def test_channels_survive_the_plugin_process_being_replaced(ek_plugin, processes, tmp_path):
    """Kill the SDK plugin, start a new process, replay start: the same host sockets carry on."""
    out = tmp_path / "sink.jsonl"
    src_rule, snk_rule = ek_plugin.rule("rsrc"), ek_plugin.rule("rsnk")
    src_ctrl = control_for("ekcount", "source", src_rule, "op1", {"count": 50})
    snk_ctrl = control_for("ekrecord", "sink", snk_rule, "op2", {"requireAck": True, "path": str(out)})
    fn_ctrl = control_for(ek_plugin.function, "func")
    meta = exec_meta(snk_rule, "op3", 0, 0)

    async def start_all(control: ControlChannel, sink: SinkChannel) -> None:
        for ctrl in (src_ctrl, snk_ctrl, fn_ctrl):
            await control.command("start", ctrl, TIMEOUT)
        sink.connect()

    def use_all(source: SourceChannel, sink: SinkChannel, fn: FunctionChannel, base: int) -> list:
        records = [item.message["n"] for item in read_items(source, 50)]
        for n in range(base, base + 20):
            sink.send({"n": n})
        return [records, fn.exec([base, 1], meta)]

    async def scenario() -> list:
        control, first = await open_control(ek_plugin, processes)
        source = SourceChannel.for_instance(IPC, ek_plugin.name, "ekcount", src_rule, "op1", 0)
        sink = SinkChannel.for_instance(
            IPC,
            ek_plugin.name,
            "ekrecord",
            snk_rule,
            "op2",
            0,
            require_ack=True,
            send_timeout=TIMEOUT,
            ack_timeout=TIMEOUT,
        )
        fn = FunctionChannel.for_symbol(IPC, ek_plugin.name, ek_plugin.function, timeout=TIMEOUT)
        for channel in (source, sink, fn):
            channel.open()
        try:
            await start_all(control, sink)
            before = await asyncio.to_thread(use_all, source, sink, fn, 0)
            first.kill()
            await asyncio.to_thread(first.wait)
            control.expect_new_process()
            ek_plugin.spawn(processes)
            await control.wait_handshake(TIMEOUT)
            # Replay: the sink's data PUSH is already dialled and redials by itself.
            for ctrl in (src_ctrl, snk_ctrl, fn_ctrl):
                await control.command("start", ctrl, TIMEOUT)
            after = await asyncio.to_thread(use_all, source, sink, fn, 20)
            return [before, after]
        finally:
            for channel in (source, sink, fn):
                channel.close()
            await control.close()

    before, after = asyncio.run(scenario())
    assert before == [list(range(50)), {"sum": 1, "rule": snk_rule}]
    assert after == [list(range(50)), {"sum": 21, "rule": snk_rule}]
    lines = [json.loads(line)["n"] for line in out.read_text().splitlines()]
    assert lines == list(range(40))
