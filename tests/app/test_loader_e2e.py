"""The loader core end to end: a real loader process, real plugin processes, real sockets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.loader_process import make_plugin, pid_alive, start_loader
from tests.support.waiting import wait_until


@pytest.fixture
def dirs(tmp_path: Path, ipc_dir: Path) -> dict[str, Path]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    return {"plugins": plugins, "ipc": ipc_dir, "data": tmp_path / "data"}


def loader_for(processes, dirs, **kw):
    return start_loader(processes, dirs["plugins"], dirs["ipc"], dirs["data"], **kw)


def test_dropped_folder_runs_and_is_listed_in_logs(processes, dirs):
    loader = loader_for(processes, dirs)
    staging = dirs["plugins"].parent / "staging"
    make_plugin(staging, "car")
    dropped = time.monotonic()
    os.rename(staging / "car", dirs["plugins"] / "car")
    running = loader.wait_for("plugin.running", plugin="car", timeout=5)
    elapsed = time.monotonic() - dropped
    assert running["version"] == "v1.0.0"
    assert pid_alive(running["pid"])
    assert (dirs["ipc"] / "plugin_car.ipc").exists()
    assert elapsed < 1.0, f"drop to running took {elapsed:.3f}s"
    # The plugin's own output is logged with its name and pid.
    output = loader.wait_for("plugin.output", plugin="car", pid=running["pid"])
    assert "dialing" in output["line"]


def test_version_change_swaps_process_and_logs_both_versions(processes, dirs):
    make_plugin(dirs["plugins"], "car", version="v1.0.0")
    loader = loader_for(processes, dirs)
    first = loader.wait_for("plugin.running", plugin="car")
    make_plugin(dirs["plugins"], "car", version="v1.1.0")
    updated = loader.wait_for("plugin.updated", plugin="car", timeout=10)
    assert updated["previous_version"] == "v1.0.0" and updated["version"] == "v1.1.0"
    assert updated["pid"] != first["pid"]
    assert wait_until(lambda: not pid_alive(first["pid"]))
    assert pid_alive(updated["pid"])


def test_same_content_touched_does_not_restart(processes, dirs):
    folder = make_plugin(dirs["plugins"], "car")
    loader = loader_for(processes, dirs)
    loader.wait_for("plugin.running", plugin="car")
    manifest = folder / "car.json"
    reconciles = loader.count("reconcile.done", folder="plugins", name="car")
    rescans = loader.count("rescan.done", folder="plugins")
    manifest.write_text(manifest.read_text())  # same bytes, new mtime
    loader.wait_for("reconcile.done", count=reconciles + 1, folder="plugins", name="car")
    loader.wait_looked_at("plugins", rescans)
    assert loader.find("plugin.updating", plugin="car") == []
    assert len(loader.find("plugin.spawned", plugin="car")) == 1


def test_invalid_change_keeps_old_version_running(processes, dirs):
    folder = make_plugin(dirs["plugins"], "car")
    loader = loader_for(processes, dirs)
    running = loader.wait_for("plugin.running", plugin="car")
    manifest = json.loads((folder / "car.json").read_text())
    manifest["sources"] = "not-a-list"
    (folder / "car.json").write_text(json.dumps(manifest))
    rejected = loader.wait_for("plugin.update_rejected", plugin="car")
    assert "car.json at /sources" in rejected["error"]
    assert "type" in rejected["error"]
    (folder / "car.json").write_text("{broken")
    rejected = loader.wait_for("plugin.update_rejected", plugin="car", count=2)
    assert "not valid JSON" in rejected["error"] and "line 1" in rejected["error"]
    assert pid_alive(running["pid"])
    assert len(loader.find("plugin.spawned", plugin="car")) == 1


def test_deleted_folder_stops_process_and_removes_socket(processes, dirs):
    make_plugin(dirs["plugins"], "car")
    loader = loader_for(processes, dirs)
    running = loader.wait_for("plugin.running", plugin="car")
    shutil.rmtree(dirs["plugins"] / "car")
    loader.wait_for("plugin.unloaded", plugin="car")
    assert wait_until(lambda: not pid_alive(running["pid"]))
    assert not (dirs["ipc"] / "plugin_car.ipc").exists()


def test_partial_copy_waits_instead_of_failing(processes, dirs):
    loader = loader_for(processes, dirs)
    folder = dirs["plugins"] / "car"
    folder.mkdir()
    (folder / "car.json").write_text(
        json.dumps({"version": "v1.0.0", "language": "python", "executable": "main.py", "sources": ["s"]})
    )
    incomplete = loader.wait_for("plugin.incomplete", plugin="car")
    assert "main.py" in incomplete["error"]
    loader.wait_looked_at("plugins", loader.count("rescan.done", folder="plugins"))  # looked again, within the grace
    assert loader.find("plugin.invalid", plugin="car") == []
    make_plugin(dirs["plugins"], "car", sources=["s"])
    loader.wait_for("plugin.running", plugin="car")
    assert loader.find("plugin.invalid", plugin="car") == []


def test_incomplete_folder_becomes_invalid_after_grace(processes, dirs):
    loader = loader_for(processes, dirs)
    folder = dirs["plugins"] / "car"
    folder.mkdir()
    (folder / "car.json").write_text(
        json.dumps({"version": "v1", "language": "python", "executable": "main.py", "sources": ["s"]})
    )
    invalid = loader.wait_for("plugin.invalid", plugin="car", timeout=8)
    assert "executable 'main.py' does not exist" in invalid["error"]


def test_sigkilled_plugin_restarts_within_a_second(processes, dirs):
    make_plugin(dirs["plugins"], "car")
    loader = loader_for(processes, dirs)
    first = loader.wait_for("plugin.running", plugin="car")
    killed_at = time.monotonic()
    os.kill(first["pid"], signal.SIGKILL)
    second = loader.wait_for("plugin.running", plugin="car", count=2, timeout=5)
    assert time.monotonic() - killed_at < 1.0
    assert second["pid"] != first["pid"]
    exited = loader.wait_for("plugin.exited", plugin="car")
    assert exited["signal"] == "SIGKILL"


def test_stopped_plugin_is_detected_as_hung_and_restarted(processes, dirs):
    make_plugin(dirs["plugins"], "car")
    loader = loader_for(
        processes, dirs, extra_config="supervisor: {keepalive_ms: 100, hung_after_s: 1.0, stop_grace_s: 0.5}\n"
    )
    first = loader.wait_for("plugin.running", plugin="car")
    time.sleep(0.5)  # let it show it sends keepalives
    os.kill(first["pid"], signal.SIGSTOP)
    try:
        unhealthy = loader.wait_for("plugin.unhealthy", plugin="car", timeout=5)
        assert "no keepalive" in unhealthy["reason"]
        second = loader.wait_for("plugin.running", plugin="car", count=2, timeout=5)
        assert second["pid"] != first["pid"]
        assert wait_until(lambda: not pid_alive(first["pid"]))
    finally:
        if pid_alive(first["pid"]):
            os.kill(first["pid"], signal.SIGKILL)


def test_plugin_without_keepalives_is_not_judged_by_silence(processes, dirs):
    make_plugin(dirs["plugins"], "quiet", behaviour={"no_keepalive": True})
    loader = loader_for(processes, dirs, extra_config="supervisor: {keepalive_ms: 100, hung_after_s: 0.5}\n")
    running = loader.wait_for("plugin.running", plugin="quiet")
    time.sleep(1.5)
    assert loader.find("plugin.unhealthy", plugin="quiet") == []
    assert pid_alive(running["pid"])


def test_crash_loop_is_reported_and_backs_off(processes, dirs):
    make_plugin(dirs["plugins"], "crashy", behaviour={"crash_after_s": 0.05, "crash_code": 7})
    loader = loader_for(
        processes,
        dirs,
        extra_config=(
            "supervisor: {crashloop_restarts: 3, crashloop_window_s: 30, restart_backoff_initial_s: 0.1,"
            " restart_backoff_max_s: 0.8}\n"
        ),
    )
    crashloop = loader.wait_for("plugin.crashloop", plugin="crashy", timeout=10)
    assert crashloop["restarts"] >= 3
    exited = loader.wait_for("plugin.exited", plugin="crashy")
    assert exited["exit_code"] == 7
    assert any("crashing on purpose" in line for line in exited["output_tail"])
    delays = [
        e["delay_s"]
        for e in loader.find("plugin.restarting", plugin="crashy") + loader.find("plugin.crashloop", plugin="crashy")
    ]
    assert sorted(delays)[:3] == [0.1, 0.2, 0.4]
    assert max(delays) <= 0.8


def test_plugin_ignoring_sigterm_is_killed_after_grace(processes, dirs):
    make_plugin(dirs["plugins"], "stubborn", behaviour={"ignore_sigterm": True})
    loader = loader_for(processes, dirs, extra_config="supervisor: {stop_grace_s: 0.5}\n")
    running = loader.wait_for("plugin.running", plugin="stubborn")
    started = time.monotonic()
    shutil.rmtree(dirs["plugins"] / "stubborn")
    killed = loader.wait_for("plugin.killed", plugin="stubborn", timeout=5)
    assert killed["pid"] == running["pid"]
    assert time.monotonic() - started < 3
    assert wait_until(lambda: not pid_alive(running["pid"]))


def test_sigkilled_loader_leaves_no_plugin_behind(processes, dirs):
    for name in ("a1", "a2", "a3"):
        make_plugin(dirs["plugins"], name)
    loader = loader_for(processes, dirs)
    pids = [loader.wait_for("plugin.running", plugin=n)["pid"] for n in ("a1", "a2", "a3")]
    loader.proc.kill()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=2.0)


def test_declared_name_mismatch_is_diagnosed(processes, dirs):
    make_plugin(dirs["plugins"], "car", behaviour={"declare_name": "truck", "dial_timeout_s": 0.5})
    loader = loader_for(processes, dirs, extra_config="supervisor: {handshake_timeout_s: 3}\n")
    failed = loader.wait_for("plugin.start_failed", plugin="car", timeout=8)
    assert "'truck'" in failed["error"] and "'car'" in failed["error"]
    assert "rename" in failed["error"]


def test_symbol_conflict_names_both_plugins_and_keeps_the_first(processes, dirs):
    make_plugin(dirs["plugins"], "first", sources=["shared"])
    loader = loader_for(processes, dirs)
    running = loader.wait_for("plugin.running", plugin="first")
    make_plugin(dirs["plugins"], "second", sources=["shared"])
    invalid = loader.wait_for("plugin.invalid", plugin="second")
    assert "'shared'" in invalid["error"] and "'first'" in invalid["error"]
    assert loader.find("plugin.spawned", plugin="second") == []
    assert pid_alive(running["pid"])


def test_folder_renamed_to_another_name(processes, dirs):
    make_plugin(dirs["plugins"], "car", sources=["s1"])
    loader = loader_for(processes, dirs)
    first = loader.wait_for("plugin.running", plugin="car")
    (dirs["plugins"] / "car" / "car.json").rename(dirs["plugins"] / "car" / "bus.json")
    os.rename(dirs["plugins"] / "car", dirs["plugins"] / "bus")
    loader.wait_for("plugin.unloaded", plugin="car")
    loader.wait_for("plugin.running", plugin="bus")
    assert wait_until(lambda: not pid_alive(first["pid"]))


def test_symlinked_plugin_folder_loads_and_follows_edits(processes, dirs, tmp_path):
    target = make_plugin(tmp_path / "elsewhere", "linked")
    os.symlink(target, dirs["plugins"] / "linked")
    loader = loader_for(processes, dirs)
    loader.wait_for("plugin.running", plugin="linked")
    make_plugin(tmp_path / "elsewhere", "linked", version="v2")
    updated = loader.wait_for("plugin.updated", plugin="linked", timeout=10)
    assert updated["version"] == "v2"


def test_editor_temp_files_do_not_trigger_swaps(processes, dirs):
    folder = make_plugin(dirs["plugins"], "car")
    loader = loader_for(processes, dirs)
    loader.wait_for("plugin.running", plugin="car")
    rescans = loader.count("rescan.done", folder="plugins")
    (folder / ".car.json.swp").write_text("x")
    (folder / "car.json~").write_text("x")
    (dirs["plugins"] / ".staging-zz").mkdir()
    loader.wait_looked_at("plugins", rescans)
    assert loader.find("plugin.updating", plugin="car") == []
    assert loader.find("plugin.invalid") == []


def test_stale_socket_removed_at_start_and_sigterm_cleans_up(processes, dirs):
    stale = dirs["ipc"] / "plugin_ghost.ipc"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(stale))
    server.close()  # the file stays, nobody listens: stale
    make_plugin(dirs["plugins"], "car")
    loader = loader_for(processes, dirs)
    ready = loader.find("loader.starting")[0]
    assert ready["stale_sockets_removed"] == 1 and not stale.exists()
    running = loader.wait_for("plugin.running", plugin="car")
    assert loader.terminate() == 0
    assert not pid_alive(running["pid"])
    assert list(dirs["ipc"].glob("*.ipc")) == []


@pytest.mark.slow
def test_fifty_plugins_dropped_at_once_all_run(processes, dirs, tmp_path):
    loader = loader_for(processes, dirs)
    staging = tmp_path / "staging"
    names = [f"p{i:02d}" for i in range(50)]
    for name in names:
        make_plugin(staging, name)
    started = time.monotonic()
    for name in names:
        os.rename(staging / name, dirs["plugins"] / name)
    for name in names:
        loader.wait_for("plugin.running", plugin=name, timeout=30)
    elapsed = time.monotonic() - started
    rss_kb = int(next(line for line in open(f"/proc/{loader.proc.pid}/status") if line.startswith("VmRSS")).split()[1])
    print(f"50 plugins running {elapsed:.2f}s after the drop; loader RSS {rss_kb / 1024:.1f} MiB")
    assert len({e["pid"] for e in loader.find("plugin.running")}) == 50
