"""Probation and rollback end to end: a real loader, real plugin processes, a rule flowing through them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from tests.support.api import start_api
from tests.support.loader_process import REPO, make_plugin, pid_alive
from tests.support.rules import (
    collected,
    install_collector,
    install_seqsrc,
    rule,
    seq_config,
    stream,
    wait_collected,
    write_json,
)

SYNTAX_ERROR = "\n\ndef broken()\n    return 1\n"


def _steady_rule(env) -> Path:
    """seqsrc (a record every 5 ms) and collector installed, rule r1 between them; its output file."""
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 1000000, "interval_ms": 5})
    stream(env["data"])
    out = env["out"] / "r1.jsonl"
    rule(env["data"], "r1", "SELECT n FROM demo", out)
    return out


def at(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def test_syntax_error_saved_in_place_keeps_the_old_version_serving(processes, env):
    folder = make_plugin(env["plugins"], "car")
    api = start_api(processes, env["plugins"], env["ipc"], env["data"])
    running = api.loader.wait_for("plugin.running", plugin="car")
    program = folder / "main.py"
    lines = len(program.read_text().splitlines())
    manifest = json.loads((folder / "car.json").read_text())
    manifest["version"] = "v2.0.0"
    (folder / "car.json").write_text(json.dumps(manifest))
    program.write_text(program.read_text() + SYNTAX_ERROR)  # saved in place, over the running version's file

    rejected = api.loader.wait_for("plugin.update_rejected", plugin="car", timeout=10)
    assert f"SyntaxError: expected ':' (main.py, line {lines + 3})" in rejected["error"], rejected
    assert rejected["rejected_version"] == "v2.0.0" and rejected["version"] == "v1.0.0"
    assert pid_alive(running["pid"]) and len(api.loader.find("plugin.spawned", plugin="car")) == 1
    status = api.ok("GET", "/plugins/portables/car/status")
    assert status["version"] == "v1.0.0" and status["pid"] == running["pid"]
    assert status["failedVersion"] == "v2.0.0" and "SyntaxError: expected ':'" in status["failedError"]
    cli = subprocess.run(
        [sys.executable, "-m", "loader", "status", "--url", api.url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert "car: version v2.0.0 failed, v1.0.0 keeps running: " in cli.stdout and "SyntaxError" in cli.stdout, cli

    # The running process reads its snapshot, not the folder being edited.
    snapshot = Path(api.loader.find("plugin.loading", plugin="car")[0]["snapshot"])
    assert snapshot.is_relative_to(env["data"] / "snapshots") and "broken" not in (snapshot / "main.py").read_text()

    program.write_text(program.read_text().replace(SYNTAX_ERROR, "\n"))  # fixed: v2 starts
    updated = api.loader.wait_for("plugin.updated", plugin="car", timeout=10)
    assert updated["version"] == "v2.0.0"
    assert api.ok("GET", "/plugins/portables/car/status")["failedVersion"] is None


def test_version_exiting_after_handshake_is_rolled_back_and_the_rule_flows_again(processes, env):
    out = _steady_rule(env)
    api = start_api(
        processes,
        env["plugins"],
        env["ipc"],
        env["data"],
        extra=f"etc_dir: {env['etc']}\nupdates: {{probation_s: 4}}\n",
    )
    loader = api.loader
    first = loader.wait_for("plugin.running", plugin="seqsrc", timeout=15)
    wait_collected(out, 20)

    folder = env["plugins"] / "seqsrc"
    program = folder / "seqsrc.py"
    good = program.read_text()
    program.write_text(
        good.replace(
            'if __name__ == "__main__":\n',
            'if __name__ == "__main__":\n'
            "    import os, threading\n"
            "    threading.Timer(2.0, os._exit, args=(3,)).start()\n",
        )
    )
    manifest = json.loads((folder / "seqsrc.json").read_text())
    (folder / "seqsrc.json").write_text(json.dumps({**manifest, "version": "v2.0.0"}))

    rolled = loader.wait_for("plugin.rolled_back", plugin="seqsrc", timeout=20)
    assert rolled["version"] == "v2.0.0" and rolled["restored_version"] == "v1.0.0"
    assert "exit code 3" in rolled["cause"]
    running = loader.wait_for("plugin.running", plugin="seqsrc", version="v1.0.0", count=2, timeout=10)
    exited = loader.find("plugin.exited", plugin="seqsrc", version="v2.0.0")[0]
    print(f"failed probation -> old version serving again: {(at(running) - at(exited)) * 1000:.0f} ms")
    assert pid_alive(running["pid"]) and running["pid"] != first["pid"]

    before = len(collected(out))
    wait_collected(out, before + 20, timeout=10)  # the rule flows again, through the restored version
    status = api.ok("GET", "/plugins/portables/seqsrc/status")
    assert status["state"] == "rolled_back" and status["version"] == "v1.0.0"
    assert status["failedVersion"] == "v2.0.0" and "exit code 3" in status["failedError"]
    assert api.ok("GET", "/rules/r1/status")["status"] == "running"
    time.sleep(1.5)  # a rescan: the failed version is not tried again while the folder keeps it
    assert len(loader.find("plugin.updating", plugin="seqsrc")) == 1

    program.write_text(good)  # the folder holds v1's code again (manifest still says v2)
    (folder / "seqsrc.json").write_text(json.dumps(manifest))
    deadline = time.monotonic() + 10
    while api.ok("GET", "/plugins/portables/seqsrc/status")["state"] != "running":
        assert time.monotonic() < deadline, "the plugin did not leave rolled_back when the folder was restored"
        time.sleep(0.1)
    assert api.ok("GET", "/plugins/portables/seqsrc/status")["failedVersion"] is None


def test_removing_a_symbol_a_running_rule_uses_is_refused_until_the_rule_stops(processes, env):
    out = _steady_rule(env)
    api = start_api(processes, env["plugins"], env["ipc"], env["data"], extra=f"etc_dir: {env['etc']}\n")
    loader = api.loader
    running = loader.wait_for("plugin.running", plugin="seqsrc", timeout=15)
    wait_collected(out, 5)

    manifest_path = env["plugins"] / "seqsrc" / "seqsrc.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "version": "v2.0.0", "sources": ["other"]}))
    rejected = loader.wait_for("plugin.update_rejected", plugin="seqsrc", timeout=10)
    assert "source 'seq' (used by rule r1)" in rejected["error"] and "stop those rules first" in rejected["error"]
    assert pid_alive(running["pid"]) and loader.find("plugin.updating", plugin="seqsrc") == []
    before = len(collected(out))
    wait_collected(out, before + 10)  # still flowing
    assert api.ok("GET", "/plugins/portables/seqsrc/status")["failedVersion"] == "v2.0.0"

    write_json(
        env["data"] / "rules" / "r1.json",
        {"id": "r1", "sql": "SELECT n FROM demo", "actions": [{"collect": {"path": str(out)}}], "triggered": False},
    )
    updated = loader.wait_for("plugin.updated", plugin="seqsrc", timeout=10)
    assert updated["version"] == "v2.0.0"


def test_a_plugin_writing_into_its_working_directory_is_not_swapped_again(processes, env):
    folder = make_plugin(env["plugins"], "car", behaviour={"write_file": "state.txt"})
    from tests.support.loader_process import start_loader

    loader = start_loader(processes, env["plugins"], env["ipc"], env["data"])
    running = loader.wait_for("plugin.running", plugin="car")
    snapshot = Path(loader.find("plugin.loading", plugin="car")[0]["snapshot"])
    deadline = time.monotonic() + 5
    while not (snapshot / "state.txt").exists():
        assert time.monotonic() < deadline, "the plugin did not write into its working directory"
        time.sleep(0.05)
    time.sleep(1.5)  # settle plus a rescan
    assert not (folder / "state.txt").exists()
    assert loader.find("plugin.updating", plugin="car") == [] and len(loader.find("plugin.spawned")) == 1
    assert pid_alive(running["pid"])
