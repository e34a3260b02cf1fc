"""Streams and rules end to end: real loader, real sdk plugin processes, real sockets."""

from __future__ import annotations

import itertools
import os
import signal
import time

from tests.support.loader_process import pid_alive
from tests.support.rules import (
    collected,
    install_collector,
    install_seqsrc,
    loader_for,
    rule,
    seq_config,
    sink_messages,
    stream,
    wait_collected,
)


def test_source_function_sink_with_acks_values_checked(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 5}, burst={"count": 40})
    stream(env["data"], conf_key="burst")
    out = env["out"] / "r1.jsonl"
    rule(
        env["data"],
        "r1",
        "SELECT n, revert(name) AS r, nested.v AS v, n * 2 + 1 AS m FROM demo WHERE n % 2 = 0",
        out,
        extra_actions=[{"log": {}}],
    )
    loader = loader_for(processes, env)
    wait_collected(out, 20)
    time.sleep(0.3)
    # eKuiper sends each result as a JSON array of its rows: one row per result without a window
    expected = [{"n": n, "r": f"x{n}"[::-1], "v": n * 10, "m": n * 2 + 1} for n in range(2, 41, 2)]
    assert sink_messages(out) == [[row] for row in expected]
    logged = loader.find("sink.log", rule="r1")
    assert [e["message"] for e in logged] == [[row] for row in expected]
    started = loader.find("rule.started", rule="r1")[0]
    assert sorted(started["plugins"]) == ["collector", "seqsrc"]


def test_rule_file_edit_restarts_and_delete_stops(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 100000, "interval_ms": 5})
    stream(env["data"])
    out1, out2 = env["out"] / "a.jsonl", env["out"] / "b.jsonl"
    rule(env["data"], "r1", "SELECT n FROM demo", out1)
    loader = loader_for(processes, env)
    wait_collected(out1, 5)
    rule(env["data"], "r1", "SELECT n, 'two' AS version FROM demo", out2)
    loader.wait_for("rule.stopped", rule="r1", reason="rule file changed")
    rows = wait_collected(out2, 5)
    assert all(r["version"] == "two" for r in rows)
    (env["data"] / "rules" / "r1.json").unlink()
    loader.wait_for("rule.deleted", rule="r1")
    count = len(collected(out2))
    time.sleep(0.5)
    assert len(collected(out2)) == count
    assert not list(env["ipc"].glob("r1_*"))


def test_sink_plugin_killed_mid_stream_loses_nothing(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    total = 300
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out = env["out"] / "r.jsonl"
    rule(env["data"], "r1", "SELECT n FROM demo", out, delay_ms=5)
    # One record per message, so at most one is in flight (tests/dataplane/test_batching.py has the batched case).
    loader = loader_for(processes, env, extra="batch: {enabled: false}\n")
    first = loader.wait_for("plugin.running", plugin="collector")
    wait_collected(out, 100)
    os.kill(first["pid"], signal.SIGKILL)
    loader.wait_for("plugin.running", plugin="collector", count=2)
    rows = wait_collected(out, total, timeout=30)
    numbers = [r["n"] for r in rows]
    assert set(numbers) == set(range(1, total + 1)), "a record was lost"
    assert len(numbers) - total <= 2, "more duplicates than in-flight records"
    assert loader.find("rule.stopped", rule="r1") == []


def test_sink_plugin_upgraded_mid_stream_loses_nothing(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    total = 300
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out = env["out"] / "r.jsonl"
    rule(env["data"], "r1", "SELECT n, revert(name) AS r FROM demo", out, delay_ms=5)
    loader = loader_for(processes, env)
    wait_collected(out, 100)
    install_collector(env["plugins"], version="v2.0.0")
    updated = loader.wait_for("plugin.updated", plugin="collector", timeout=15)
    assert updated["version"] == "v2.0.0"
    rows = wait_collected(out, total, timeout=30)
    numbers = [r["n"] for r in rows]
    assert set(numbers) == set(range(1, total + 1)), "a record was lost"
    assert all(r["r"] == f"x{r['n']}"[::-1] for r in rows)
    assert loader.find("rule.stopped", rule="r1") == []


def test_shared_source_feeds_two_rules_from_one_instance(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 100000, "interval_ms": 5})
    stream(env["data"], shared=True)
    out1, out2 = env["out"] / "1.jsonl", env["out"] / "2.jsonl"
    rule(env["data"], "r1", "SELECT n FROM demo", out1)
    rule(env["data"], "r2", "SELECT n FROM demo WHERE n % 2 = 0", out2)
    loader = loader_for(processes, env)
    wait_collected(out1, 20)
    wait_collected(out2, 10)
    source_starts = [
        e
        for e in loader.find("plugin.log", plugin="seqsrc")
        if e.get("symbol") == "seq" and "start" in e.get("message", "")
    ]
    assert {e.get("rule") for e in source_starts} == {"shared.demo"}
    assert len(source_starts) == 1
    assert all(r["n"] % 2 == 0 for r in collected(out2))
    sockets = sorted(p.name for p in env["ipc"].glob("*src-demo*"))
    assert sockets == ["shared.demo_src-demo_0.ipc"]


def test_bad_sql_is_reported_precisely_and_others_keep_running(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 100000, "interval_ms": 5})
    stream(env["data"])
    good = env["out"] / "good.jsonl"
    rule(env["data"], "good", "SELECT n FROM demo", good)
    loader = loader_for(processes, env)
    wait_collected(good, 5)
    rule(env["data"], "bad", "SELECT n FROM demo GROUP BY n", env["out"] / "bad.jsonl")
    error = loader.wait_for("rule.error", rule="bad")
    assert "GROUP BY" in error["error"] and "line 1, column" in error["error"]
    rule(env["data"], "bad2", "SELECT revert(name, n) FROM demo", env["out"] / "bad2.jsonl")
    error = loader.wait_for("rule.error", rule="bad2")
    assert "revert takes 1 argument" in error["error"]
    before = len(collected(good))
    time.sleep(0.3)
    assert len(collected(good)) > before
    assert loader.find("rule.stopped", rule="good") == []


def test_rule_waits_for_missing_plugin_then_starts(processes, env):
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 10})
    stream(env["data"])
    out = env["out"] / "r.jsonl"
    rule(env["data"], "r1", "SELECT n FROM demo", out)
    loader = loader_for(processes, env)
    waiting = loader.wait_for("rule.waiting", rule="r1")
    assert "'seq'" in waiting["reason"]
    install_seqsrc(env["plugins"])
    loader.wait_for("rule.started", rule="r1")
    assert [r["n"] for r in wait_collected(out, 10)] == list(range(1, 11))


def test_rules_and_their_stopped_state_survive_a_loader_restart(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 100000, "interval_ms": 5})
    stream(env["data"])
    out = env["out"] / "r.jsonl"
    rule(env["data"], "on", "SELECT n FROM demo", out)
    rule(env["data"], "off", "SELECT n FROM demo", env["out"] / "off.jsonl", triggered=False)
    loader = loader_for(processes, env)
    loader.wait_for("rule.started", rule="on")
    assert loader.terminate() == 0
    out.unlink()
    again = loader_for(processes, env)
    again.wait_for("rule.started", rule="on")
    wait_collected(out, 5)
    assert again.find("rule.started", rule="off") == []
    assert not (env["out"] / "off.jsonl").exists()


def test_source_plugin_killed_mid_stream_rule_resumes(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 100000, "interval_ms": 5})
    stream(env["data"])
    out = env["out"] / "r.jsonl"
    rule(env["data"], "r1", "SELECT n FROM demo", out)
    loader = loader_for(processes, env)
    first = loader.wait_for("plugin.running", plugin="seqsrc")
    wait_collected(out, 10)
    seen_before = len(collected(out))
    os.kill(first["pid"], signal.SIGKILL)
    second = loader.wait_for("plugin.running", plugin="seqsrc", count=2)
    assert second["pid"] != first["pid"] and not pid_alive(first["pid"])
    # The new process counts from 1 again: its records flow on without the rule being touched.

    def restarted() -> bool:
        rows = collected(out)
        return any(b["n"] < a["n"] for a, b in itertools.pairwise(rows[seen_before - 1 :]))

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not restarted():
        time.sleep(0.05)
    assert restarted(), "no records from the new process"
    assert loader.find("rule.stopped", rule="r1") == []
