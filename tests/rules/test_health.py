"""Rules tell the truth: real loader, real sdk plugin processes that fail in the ways operators meet.

A rule whose source's ``open`` raises, whose sink's ``open`` raises, or
whose sink plugin crash-loops is ``degraded`` with a cause naming the
symbol and the plugin (REST, ``/metrics``, ``portable-loader status``,
``rule.degraded``), and ``running`` again (``rule.recovered``) once fixed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from loader.app.cli import main
from loader.dataplane.parts import StuckFacts
from loader.rules.health import NodeFacts
from tests.support.api import start_api
from tests.support.metrics import scrape, value
from tests.support.rules import install, install_seqsrc, seq_config, stream, write_json
from tests.support.waiting import wait_until

HEALTH = "rules: {degraded_hold_s: 1}\n"
FAST_RESTARTS = (
    "supervisor: {restart_backoff_initial_s: 0.05, restart_backoff_max_s: 0.5, crashloop_restarts: 2, "
    "crashloop_window_s: 60}\n"
)


@pytest.fixture
def flag(tmp_path: Path, monkeypatch) -> Path:
    """The file the failing test plugins look at (through the loader's environment, which plugins inherit)."""
    path = tmp_path / "flag"
    monkeypatch.setenv("RULE_HEALTH_FLAG", str(path))
    return path


def rule_status(api, rule_id: str) -> dict:
    return api.ok("GET", f"/rules/{rule_id}/status")


def test_rule_over_a_failing_source_is_degraded_then_recovers(processes, tmp_path: Path, ipc_dir: Path, flag):
    plugins, data, etc = tmp_path / "plugins", tmp_path / "data", tmp_path / "etc"
    install(plugins, "failsrc", sources=["fails"])
    write_json(data / "streams" / "s.json", {"sql": 'CREATE STREAM s () WITH (TYPE="fails", DATASOURCE="d")'})
    write_json(data / "rules" / "r1.json", {"id": "r1", "sql": "SELECT n FROM s", "actions": [{"nop": {}}]})
    flag.write_text("down")
    api = start_api(processes, plugins, ipc_dir, data, extra=f"etc_dir: {etc}\n" + HEALTH)

    degraded = api.loader.wait_for("rule.degraded", rule="r1", timeout=15)
    assert (degraded["symbol"], degraded["plugin"], degraded["cause"]) == ("fails", "failsrc", "source error")
    assert "cannot reach the device" in degraded["error"]
    status = rule_status(api, "r1")
    assert status["status"] == "running" and status["state"] == "degraded"
    assert status["causes"] == [
        {"symbol": "fails", "plugin": "failsrc", "cause": "source error", "message": degraded["error"]}
    ]
    assert status["source_s_0_last_record_in_time"] == 0
    assert api.ok("GET", "/status")["rules"]["degraded"] == 1
    samples = scrape(api)
    assert value(samples, "portable_loader_rule_state", rule="r1", state="degraded") == 1
    assert value(samples, "portable_loader_rule_state", rule="r1", state="running") == 0

    flag.unlink()  # the device is back; a new process opens the source again
    running = api.loader.wait_for("plugin.running", plugin="failsrc")
    os.kill(running["pid"], signal.SIGKILL)
    recovered = api.loader.wait_for("rule.recovered", rule="r1", cause="source error", timeout=20)
    assert recovered["symbol"] == "fails" and recovered["plugin"] == "failsrc"
    # Recovered means working again; records flow from the new process a moment later.
    status = wait_until(
        lambda: (
            (s := rule_status(api, "r1"))["state"] == "running"
            and s["source_s_0_last_record_in_time"] > 0
            and s["sink_nop_0_0_last_record_out_time"] > 0
            and s
        ),
        timeout=10,
    )
    assert status and "causes" not in status
    samples = scrape(api)
    assert value(samples, "portable_loader_rule_state", rule="r1", state="running") == 1
    assert value(samples, "portable_loader_rule_last_record_out_timestamp_seconds", rule="r1", node="sink_nop_0_0") > 0


def test_rule_over_a_failing_then_crash_looping_sink_is_degraded_then_recovers(
    processes, tmp_path: Path, ipc_dir: Path, flag, capsys
):
    plugins, data, etc = tmp_path / "plugins", tmp_path / "data", tmp_path / "etc"
    install_seqsrc(plugins)
    install(plugins, "crashsink", sinks=["drop"])
    seq_config(etc, default={"count": 10_000_000, "interval_ms": 5})
    stream(data)
    write_json(data / "rules" / "calm.json", {"id": "calm", "sql": "SELECT n FROM demo", "actions": [{"nop": {}}]})
    write_json(
        data / "rules" / "r2.json",
        {"id": "r2", "sql": "SELECT n FROM demo", "actions": [{"drop": {"requireAck": True}}]},
    )
    flag.write_text("open")  # the sink's open raises: the sdk error-acks every record
    api = start_api(processes, plugins, ipc_dir, data, extra=f"etc_dir: {etc}\n" + HEALTH + FAST_RESTARTS)

    degraded = api.loader.wait_for("rule.degraded", rule="r2", timeout=15)
    assert (degraded["symbol"], degraded["plugin"], degraded["cause"]) == ("drop", "crashsink", "sink open failed")
    assert "broker refused the connection" in degraded["error"]
    assert rule_status(api, "r2")["state"] == "degraded"

    # portable-loader status: the degraded rule first, before the healthy one.
    assert main(["status", "--url", api.url]) == 0
    out = capsys.readouterr().out
    assert "rules: 1 running, 1 degraded" in out.splitlines()[0]
    rule_lines = [line.split()[0] for line in out.splitlines() if line.split()[:1] in (["r2"], ["calm"])]
    assert rule_lines == ["r2", "calm"]

    flag.write_text("crash")  # now the whole plugin process dies at start
    pid = api.loader.find("plugin.running", plugin="crashsink")[-1]["pid"]
    os.kill(pid, signal.SIGKILL)
    api.loader.wait_for("plugin.crashloop", plugin="crashsink", timeout=20)
    crashloop = wait_until(
        lambda: [c for c in rule_status(api, "r2").get("causes", []) if c["cause"] == "plugin crashloop"], timeout=10
    )
    assert crashloop, rule_status(api, "r2")
    assert crashloop[0]["symbol"] == "drop" and crashloop[0]["plugin"] == "crashsink"
    assert "crashsink is crashloop" in crashloop[0]["message"] and "exit code 3" in crashloop[0]["message"]
    plugin_causes = wait_until(
        lambda: [e for e in api.loader.find("rule.degraded", rule="r2") if e["cause"].startswith("plugin ")], timeout=5
    )
    assert plugin_causes and plugin_causes[0]["symbol"] == "drop" and plugin_causes[0]["plugin"] == "crashsink"
    assert rule_status(api, "calm")["state"] == "running"

    flag.unlink()  # fixed: the next restart comes up, opens the sink and records are acked again
    api.loader.wait_for("plugin.running", plugin="crashsink", count=2, timeout=20)
    wait_until(lambda: rule_status(api, "r2")["state"] == "running", timeout=15)
    recovered = wait_until(
        lambda: (
            (c := {e["cause"] for e in api.loader.find("rule.recovered", rule="r2")})
            and "sink open failed" in c
            and any(x.startswith("plugin ") for x in c)
            and c
        ),
        timeout=5,
    )
    assert recovered, api.loader.find("rule.recovered", rule="r2")
    last = api.loader.find("rule.recovered", rule="r2")[-1]
    assert last["remaining_causes"] == 0
    status = rule_status(api, "r2")
    assert status["sink_drop_0_0_last_record_out_time"] > 0


def _sink(**kw) -> NodeFacts:

    facts = {
        "kind": "sink",
        "symbol": "drop",
        "plugin": "mq",
        "last_ok_ms": 0,
        "last_error_ms": 0,
        "error": "",
        "error_generation": 1,
        "generation": 1,
    }
    return NodeFacts(**{**facts, **kw})


@pytest.mark.parametrize(
    "node, now, expected",
    [
        (_sink(), 5000, None),  # never an error
        (_sink(last_error_ms=1000, error="sink open failed: x"), 99_000, "sink open failed"),  # latest, this process
        (_sink(last_error_ms=1000, error="bad record", last_ok_ms=1500), 1800, "records error-acked"),  # within hold
        (_sink(last_error_ms=1000, error="bad record", last_ok_ms=1500), 2100, None),  # ok since, hold passed
        (_sink(last_error_ms=1000, error="sink open failed: x", generation=2), 2100, None),  # old process, hold passed
        (_sink(kind="source", last_error_ms=1000, error="RuntimeError: down"), 9000, "source error"),
    ],
)
def test_node_causes_follow_latest_outcome_process_and_hold(node, now, expected):
    from loader.rules.health import causes

    found = causes([], [node], now, hold_ms=1000)
    assert [c.cause for c in found] == ([expected] if expected else [])


def test_plugin_states_cycling_during_a_crash_loop_are_one_cause():
    from loader.rules.health import PluginFacts, causes, changes

    before = {c.key: c for c in causes([PluginFacts("mq", "restarting", "exit 3", ("drop",))], [], 0, 0)}
    appeared, cleared = changes(before, causes([PluginFacts("mq", "crashloop", "exit 3", ("drop",))], [], 0, 0))
    assert appeared == [] and cleared == []
    appeared, cleared = changes(before, causes([PluginFacts("mq", "running", None, ("drop",))], [], 0, 0))
    assert appeared == [] and [c.cause for c in cleared] == ["plugin restarting"]


def _stuck(**kw) -> StuckFacts:

    facts = {
        "kind": "function",
        "symbol": "hang",
        "plugin": "fx",
        "last_ok_ms": 0,
        "last_failed_ms": 0,
        "error": "no answer in 1s (limits.function_timeout_s)",
    }
    return StuckFacts(**{**facts, **kw})


@pytest.mark.parametrize(
    "part, now, expected",
    [
        (_stuck(), 5000, None),  # never stuck
        (_stuck(last_failed_ms=1000), 99_000, "function timeout"),  # not answered since: a restart alone is no proof
        (_stuck(last_failed_ms=1000, last_ok_ms=1500), 1800, "function timeout"),  # answered, within hold
        (_stuck(last_failed_ms=1000, last_ok_ms=1500), 2100, None),  # answered, hold passed
        (_stuck(kind="sink", symbol="collect", last_failed_ms=1000), 9000, "sink stalled"),
    ],
)
def test_stuck_parts_are_causes_until_they_answer_again(part, now, expected):
    from loader.rules.health import causes

    found = causes([], [], now, hold_ms=1000, stuck=[part])
    assert [c.cause for c in found] == ([expected] if expected else [])
    if expected:
        assert found[0].message.startswith(f"{part.kind} {part.symbol} of plugin fx: ")


def test_a_part_records_failures_for_health_and_tells_the_supervisor_each_time():
    from loader.dataplane.parts import RuleParts

    told: list[str] = []
    part = RuleParts("r1").part("sink", "collect", "collector", told.append)
    part.working()
    assert part.facts().last_failed_ms == 0 and part.facts().last_ok_ms == 0
    part.failed("no ack")
    part.failed("no ack")
    assert told == ["no ack", "no ack"] and part.facts().last_ok_ms == 0
    part.working()
    facts = part.facts()
    assert facts.last_ok_ms > facts.last_failed_ms > 0
