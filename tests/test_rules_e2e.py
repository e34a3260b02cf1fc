"""Streams and rules end to end: real loader, real sdk plugin processes, real sockets."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import time
from pathlib import Path

from tests.loader_harness import pid_alive, start_loader

FIXTURES = Path(__file__).resolve().parent / "rules_fixtures"


def install(plugins: Path, name: str, version: str = "v1.0.0", **symbols: list[str]) -> Path:
    folder = plugins / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / f"{name}.py", folder / f"{name}.py")
    manifest = {"version": version, "language": "python", "executable": f"{name}.py", **symbols}
    (folder / f"{name}.json").write_text(json.dumps(manifest))
    return folder


def install_seqsrc(plugins: Path, **kw) -> Path:
    return install(plugins, "seqsrc", sources=["seq"], **kw)


def install_collector(plugins: Path, **kw) -> Path:
    return install(plugins, "collector", sinks=["collect"], functions=["revert"], **kw)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def stream(data: Path, name: str = "demo", conf_key: str = "default", shared: bool = False) -> None:
    sql = (
        f'CREATE STREAM {name} () WITH (TYPE="seq", DATASOURCE="t1", CONF_KEY="{conf_key}", '
        f'FORMAT="json", SHARED="{str(shared).lower()}")'
    )
    write_json(data / "streams" / f"{name}.json", {"sql": sql})


def rule(
    data: Path,
    rule_id: str,
    sql: str,
    out: Path | None = None,
    require_ack: bool = True,
    extra_actions: list | None = None,
    delay_ms: int = 0,
    **fields,
) -> None:
    props = {"path": str(out), "requireAck": require_ack, "delay_ms": delay_ms}
    actions = [{"collect": props}] if out else []
    write_json(
        data / "rules" / f"{rule_id}.json",
        {"id": rule_id, "sql": sql, "actions": actions + (extra_actions or []), **fields},
    )


def seq_config(etc: Path, **keys: dict) -> None:
    (etc / "sources").mkdir(parents=True, exist_ok=True)
    (etc / "sources" / "seq.yaml").write_text(json.dumps(keys))


def sink_messages(path: Path) -> list:
    """What the collector sink got: one decoded message per line, exactly as sent."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collected(path: Path) -> list[dict]:
    """The rows the collector sink got, in order: each message is an array of rows (or, with sendSingle, a row).

    The message shapes themselves are checked by test_sink_messages_* below.
    """
    rows: list[dict] = []
    for message in sink_messages(path):
        rows.extend(message) if isinstance(message, list) else rows.append(message)
    return rows


def wait_collected(path: Path, count: int, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = collected(path)
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{path}: {len(collected(path))} records, expected {count}")


def loader_for(processes, env, extra: str = ""):
    return start_loader(
        processes, env["plugins"], env["ipc"], env["data"], extra_config=f"etc_dir: {env['etc']}\n" + extra
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
    # One record per message, so at most one is in flight (tests/test_batching.py has the batched case).
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
