"""Finding 14: processes a plugin starts cannot outlive it.

Two plugins try: one forks a ``setsid`` child and a double-forked daemon
(orphaned at once, so no parent chain leads to it), the other is a wrapper
script that starts its program without ``exec``.  After an unload none of
their processes is alive; after the loader is killed with SIGKILL (the
parent-death signal reaches only the plugin itself) the next loader ends
whatever was left before it starts anything.  Checked by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tests.hostile.survival import Bystander, assert_survived
from tests.support.api import free_port
from tests.support.loader_process import RAW_PLUGIN, pid_alive, start_loader

FORKER = """
import os, runpy, subprocess, sys, time
from pathlib import Path
here = Path(__file__).resolve().parent
pids = Path(os.environ["ESCAPE_PIDS"]) / (here.name + ".txt")
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
daemon = subprocess.Popen([sys.executable, "-c",
    "import os, sys, time\\nif os.fork(): sys.exit(0)\\nos.setsid()\\n"
    "open(sys.argv[1], 'a').write(f'{os.getpid()}\\\\n')\\ntime.sleep(600)", str(pids)])
daemon.wait()
with open(pids, "a") as f:
    f.write(f"{child.pid}\\n")
runpy.run_path(str(here / "raw.py"), run_name="__main__")
"""

WRAPPER = """#!/bin/sh
# starts the plugin without exec: the shell stays the plugin's process
"$PYTHON" "$(dirname "$0")/raw.py" "$1" &
echo $! >> "$ESCAPE_PIDS/$(basename "$(dirname "$0")").txt"
wait
"""


def _plugin(plugins: Path, name: str, executable: str, text: str, language: str) -> Path:
    folder = plugins / name
    folder.mkdir(parents=True)
    shutil.copy(RAW_PLUGIN, folder / "raw.py")
    (folder / executable).write_text(text)
    (folder / executable).chmod(0o755)
    (folder / f"{name}.json").write_text(
        json.dumps({"version": "v1.0.0", "language": language, "executable": executable, "sources": [f"{name}_src"]})
    )
    return folder


def _pids(folder: Path, count: int, timeout: float = 10.0) -> list[int]:
    """The pids a plugin recorded (outside its folder: a change inside would be a new version)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = folder.parent.parent / "pids" / f"{folder.name}.txt"
        lines = path.read_text().split() if path.exists() else []
        if len(lines) >= count:
            return [int(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"{folder.name} did not record {count} pids")


def _all_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_unload_and_loader_death_leave_no_descendant(processes, tmp_path, ipc_dir):
    plugins, data = tmp_path / "plugins", tmp_path / "data"
    plugins.mkdir()
    port = free_port()
    config = f"rest: 127.0.0.1:{port}\nsupervisor: {{stop_grace_s: 1}}\n"
    (tmp_path / "pids").mkdir()
    env = {"PYTHON": sys.executable, "ESCAPE_PIDS": str(tmp_path / "pids")}
    seen: list[int] = []
    try:
        loader = start_loader(processes, plugins, ipc_dir, data, extra_config=config, env_extra=env)
        bystander = Bystander.add(plugins, loader)
        forker = _plugin(plugins, "forker", "main.py", FORKER, "python")
        wrapped = _plugin(plugins, "wrapped", "run.sh", WRAPPER, "shell")
        loader.wait_for("plugin.running", timeout=20, plugin="forker")
        loader.wait_for("plugin.running", timeout=20, plugin="wrapped")
        escaped = _pids(forker, 2) + _pids(wrapped, 1)
        seen += escaped
        assert all(pid_alive(pid) for pid in escaped)

        # Unload: the folders go, and with them every process they started.
        shutil.rmtree(forker)
        shutil.rmtree(wrapped)
        loader.wait_for("plugin.stopped", timeout=15, plugin="forker")
        loader.wait_for("plugin.stopped", timeout=15, plugin="wrapped")
        assert _all_gone(escaped) == [], "a descendant survived the unload"
        assert_survived(f"http://127.0.0.1:{port}", loader, bystander)

        # Loader death: SIGKILL, so nothing of the loader runs; the plugins' helpers outlive it.
        for name in ("forker", "wrapped"):
            (tmp_path / "pids" / f"{name}.txt").unlink()
        forker = _plugin(plugins, "forker", "main.py", FORKER, "python")
        wrapped = _plugin(plugins, "wrapped", "run.sh", WRAPPER, "shell")
        loader.wait_for("plugin.running", timeout=20, count=2, plugin="forker")
        loader.wait_for("plugin.running", timeout=20, count=2, plugin="wrapped")
        escaped = _pids(forker, 2) + _pids(wrapped, 1)
        seen += escaped
        loader.proc.kill()
        loader.proc.wait(timeout=10)
        left = [pid for pid in escaped if pid_alive(pid)]
        assert left, "nothing outlived the loader: the test no longer shows the problem"
        for name in ("forker", "wrapped"):
            (tmp_path / "pids" / f"{name}.txt").unlink()

        loader = start_loader(processes, plugins, ipc_dir, data, extra_config=config, env_extra=env)
        killed = loader.wait_for("loader.leftovers_killed", timeout=5)
        # A leftover may also end by itself between the two looks (a wrapper whose child died):
        # the loader must have killed the others, and afterwards none may be alive.
        assert set(killed["pids"]) & set(left), (left, killed)
        assert _all_gone(escaped) == [], "a descendant of the killed loader's plugins survived the restart"
        # The plugins start again as new processes, and nothing old answers on their sockets.
        loader.wait_for("plugin.running", timeout=20, plugin="forker")
        loader.wait_for("plugin.running", timeout=20, plugin="wrapped")
        seen += _pids(forker, 2) + _pids(wrapped, 1)
        bystander = Bystander(bystander.name, loader.wait_for("plugin.running", plugin=bystander.name)["pid"])
        assert_survived(f"http://127.0.0.1:{port}", loader, bystander)
    finally:
        _kill(seen)
