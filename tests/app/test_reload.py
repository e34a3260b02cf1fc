"""``portable-loader reload``: validates first, then waits for the running loader's own verdict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loader.app.reload import is_loader
from tests.support.loader_process import REPO, make_plugin, start_loader
from tests.support.notify import NotifySocket
from tests.support.waiting import wait_until


def reload(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loader", "reload", "--config", str(config), "--timeout", "20", *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_invalid_config_fails_before_signalling_and_the_old_config_still_applies(processes, tmp_path, ipc_dir):
    plugins, data = tmp_path / "plugins", tmp_path / "data"
    make_plugin(plugins, "car")
    loader = start_loader(processes, plugins, ipc_dir, data, log_level="info")
    config = data / "loader.yaml"
    config.write_text(config.read_text().replace("level: info", "level: warning") + "watch_typo: 1\n")
    result = reload(config)
    assert result.returncode == 1, result
    assert "watch_typo" in result.stderr and str(config) in result.stderr and "kept" in result.stderr
    make_plugin(plugins, "bus")  # info events still logged: the old log level applies
    loader.wait_for("plugin.running", plugin="bus")
    assert loader.find("loader.signal", signal="SIGHUP") == []


def test_the_loaders_own_refusal_is_the_exit_code(processes, tmp_path, ipc_dir):
    plugins, data = tmp_path / "plugins", tmp_path / "data"
    loader = start_loader(processes, plugins, ipc_dir, data)
    running_config = data / "loader.yaml"
    checked = tmp_path / "checked.yaml"
    checked.write_text(running_config.read_text())  # what the command checks is fine ...
    running_config.write_text(running_config.read_text() + "log: {level: loud}\n")  # ... the loader's file is not
    result = reload(checked, "--pid", str(loader.proc.pid))
    assert result.returncode == 1, result
    assert "reload failed" in result.stderr and "loud" in result.stderr
    failed = loader.wait_for("loader.reload_failed")
    assert "loud" in failed["error"]
    make_plugin(plugins, "bus")
    loader.wait_for("plugin.running", plugin="bus")


def test_valid_config_reloads_exits_zero_and_brackets_it_for_systemd(processes, tmp_path, ipc_dir):
    plugins, data = tmp_path / "plugins", tmp_path / "data"
    notify = NotifySocket(ipc_dir / "notify.sock")
    try:
        loader = start_loader(processes, plugins, ipc_dir, data, env_extra={"NOTIFY_SOCKET": str(notify.path)})
        config = data / "loader.yaml"
        config.write_text(config.read_text() + "supervisor: {restart_backoff_initial_s: 0.3}\n")
        result = reload(config)  # no --pid: the loader's state file names it
        assert result.returncode == 0, result
        assert result.stdout.strip() == "reloaded; changed: supervisor"
        assert loader.find("loader.reloaded")[0]["changed"] == ["supervisor"]
        assert wait_until(lambda: notify.lines().count("READY=1") >= 2)
        lines = notify.lines()
        reloading = lines.index("RELOADING=1")
        assert lines[reloading + 1].startswith("MONOTONIC_USEC=")
        assert int(lines[reloading + 1].split("=")[1]) > 0
        assert lines.index("READY=1") < reloading < len(lines) - 1 - lines[::-1].index("READY=1")
        assert reload(config).returncode == 0, "a second reload waits for its own answer"
    finally:
        notify.close()


def test_no_running_loader_is_exit_3(tmp_path):
    config = tmp_path / "loader.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    result = reload(config)
    assert result.returncode == 3 and "no running loader" in result.stderr


def test_a_loader_hidden_by_proc_counts_only_as_the_pid_it_announced(tmp_path):
    """ExecReload= under PrivateUsers= and ProtectProc=invisible sees no /proc entry of the loader."""
    hidden = tmp_path / "proc"  # a /proc that shows no process at all
    hidden.mkdir()
    alive = os.getpid()
    assert is_loader(alive, announced=alive, proc=hidden)
    assert not is_loader(alive, announced=alive + 1, proc=hidden), "a pid the loader did not announce"
    assert not is_loader(alive, announced=None, proc=hidden)
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    assert not is_loader(gone.pid, announced=gone.pid, proc=hidden), "an announced pid that no longer runs"


def test_a_visible_process_counts_by_its_command_line(tmp_path):
    proc = tmp_path / "proc"
    (proc / "10").mkdir(parents=True)
    (proc / "10/cmdline").write_bytes(b"/opt/venv/bin/python3\0/opt/venv/bin/portable-loader\0serve\0")
    (proc / "11").mkdir()
    (proc / "11/cmdline").write_bytes(b"/usr/bin/sleep\0100\0")
    assert is_loader(10, announced=None, proc=proc)
    assert not is_loader(11, announced=11, proc=proc), "a stranger that reused the announced pid"
