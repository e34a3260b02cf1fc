"""Finding 12: a function that never returns and a sink that never acknowledges.

Both used to stall their rule silently (a batch of 256 rows had 256 x 10 s
to answer; a sink without acks logged one warning).  Now a function call,
batched or not, has one time limit, and a sink without progress for
``limits.sink_stall_s`` counts as stalled: the rule reports itself degraded
(``rule.degraded`` with the cause ``function timeout`` or ``sink stalled``,
and status ``degraded`` listing it), and the plugin is
marked unhealthy, which restarts it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.hostile.helpers import snapshot
from tests.hostile.rules_env import (
    install_collector,
    install_hostilefix,
    install_seqsrc,
    rule,
    source_config,
    stream,
)
from tests.hostile.survival import Bystander, assert_survived, get_json
from tests.support.api import free_port
from tests.support.loader_process import start_loader


def _start(processes, tmp_path: Path, ipc_dir: Path, limits: str):
    plugins, data, etc = tmp_path / "plugins", tmp_path / "data", tmp_path / "etc"
    plugins.mkdir()
    source_config(etc, "seq", count=1000000, interval_ms=20)
    port = free_port()
    loader = start_loader(
        processes,
        plugins,
        ipc_dir,
        data,
        extra_config=(f"etc_dir: {etc}\nrest: 127.0.0.1:{port}\nlimits: {{{limits}}}\nbatch: {{enabled: true}}\n"),
    )
    return loader, plugins, data, f"http://127.0.0.1:{port}"


def test_a_function_that_never_returns_degrades_the_rule_and_restarts_its_plugin(processes, tmp_path, ipc_dir):
    loader, plugins, data, url = _start(processes, tmp_path, ipc_dir, "function_timeout_s: 1")
    bystander = Bystander.add(plugins, loader)
    install_seqsrc(plugins)
    install_hostilefix(plugins)
    first = loader.wait_for("plugin.running", timeout=20, plugin="hostilefix")
    loader.wait_for("plugin.running", timeout=20, plugin="seqsrc")
    stream(data, "demo", "seq")
    rule(data, "hung", "SELECT n, hang(n) AS h FROM demo", [{"nop": {}}])
    started = loader.wait_for("rule.started", timeout=20, rule="hung")
    before = [snapshot(folder) for folder in (plugins, tmp_path / "etc", data / "rules")]

    degraded = loader.wait_for("rule.degraded", timeout=10, rule="hung", cause="function timeout")
    took = _seconds_between(started, degraded)
    assert (degraded["symbol"], degraded["plugin"], degraded["cause"]) == ("hang", "hostilefix", "function timeout"), (
        degraded
    )
    assert "limits.function_timeout_s" in degraded["error"], degraded
    assert took < 4, f"the first timeout took {took:.1f}s: not one limit per call"
    unhealthy = loader.wait_for("plugin.unhealthy", timeout=5, plugin="hostilefix")
    assert "function hang" in unhealthy["reason"], unhealthy
    restarted = loader.wait_for("plugin.running", timeout=20, count=2, plugin="hostilefix")
    assert restarted["pid"] != first["pid"]

    status = get_json(f"{url}/rules/hung/status")
    assert status["state"] == "degraded", status
    assert any(c["symbol"] == "hang" and c["cause"] == "function timeout" for c in status["causes"]), status
    assert "function hang" in status["message"]
    assert_survived(url, loader, bystander)
    assert [snapshot(folder) for folder in (plugins, tmp_path / "etc", data / "rules")] == before


def test_a_sink_that_never_acks_degrades_the_rule_and_restarts_its_plugin(processes, tmp_path, ipc_dir):
    loader, plugins, data, url = _start(processes, tmp_path, ipc_dir, "sink_stall_s: 2")
    bystander = Bystander.add(plugins, loader)
    install_seqsrc(plugins)
    install_collector(plugins)
    first = loader.wait_for("plugin.running", timeout=20, plugin="collector")
    loader.wait_for("plugin.running", timeout=20, plugin="seqsrc")
    stream(data, "demo", "seq")
    out = tmp_path / "never.jsonl"
    rule(
        data,
        "stuck",
        "SELECT n FROM demo",
        [{"collect": {"path": str(out), "requireAck": True, "delay_ms": 10_000_000}}],
    )
    started = loader.wait_for("rule.started", timeout=20, rule="stuck")
    before = [snapshot(folder) for folder in (plugins, tmp_path / "etc", data / "rules")]

    degraded = loader.wait_for("rule.degraded", timeout=15, rule="stuck", cause="sink stalled")
    assert (degraded["symbol"], degraded["plugin"], degraded["cause"]) == ("collect", "collector", "sink stalled"), (
        degraded
    )
    assert "limits.sink_stall_s" in degraded["error"], degraded
    assert _seconds_between(started, degraded) < 9  # one ack timeout (5 s) and the stall limit
    unhealthy = loader.wait_for("plugin.unhealthy", timeout=5, plugin="collector")
    assert "sink collect of rule stuck" in unhealthy["reason"], unhealthy
    restarted = loader.wait_for("plugin.running", timeout=20, count=2, plugin="collector")
    assert restarted["pid"] != first["pid"]
    status = get_json(f"{url}/rules/stuck/status")
    assert status["state"] == "degraded", status
    assert any(c["symbol"] == "collect" and c["cause"] == "sink stalled" for c in status["causes"]), status
    assert "sink collect" in status["message"]
    assert_survived(url, loader, bystander)
    assert [snapshot(folder) for folder in (plugins, tmp_path / "etc", data / "rules")] == before


def _seconds_between(first: dict, second: dict) -> float:
    def parse(event: dict) -> float:
        return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()

    return parse(second) - parse(first)
