"""Figures 5 and 6: how fast a dropped folder runs, and how fast a killed plugin comes back.

- The plugin's own start: an sdk plugin (bench/plugins/benchplug.py) spawned
  directly, from just before ``Popen`` to its ``handshake`` on a raw REP
  socket, no loader involved.
- Figure 5: the real loader with the default settle time.  A complete plugin
  folder is prepared under a hidden name in ``plugins_dir`` (hidden entries
  are never plugins) and renamed to its real name; the figure is the time
  from the rename to the ``timestamp`` of the loader's ``plugin.on_probation``
  event for it (the loader's own clock, so reading its pipe adds nothing).
- Figure 6: right after, the plugin's process is SIGKILLed; the figure is
  the time from the kill to the next ``plugin.on_probation`` (a fresh plugin, so
  this is always its first restart).  Then the folder is removed
  (``plugin.unloaded``) and the next drop begins.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import pynng

from bench.harness import PYTHON, Run, event_time, install_benchplug, plugin_argument
from bench.report import Row, info_row, limit_row, median, percentile
from loader.config import SupervisorSettings, WatchSettings
from loader.wire.addresses import control_path

SLACK_MS = 150
RESTART_GOAL_MS = 1000


def spawn_to_handshake(run: Run, times: int) -> list[float]:
    """ms from spawning an sdk plugin to its first handshake, ``times`` samples."""
    ipc = run.ipc_dir()
    name = "bspawn"
    folder = install_benchplug(run.dir("spawn"), name, sources=["spawnsrc"])
    argument = plugin_argument(ipc, name)
    samples = []
    for _ in range(times):
        path = control_path(ipc, name)
        sock = pynng.Rep0(recv_timeout=10000)
        sock.listen(f"ipc://{path}")
        proc = None
        try:
            with open(folder / "plugin.log", "ab") as log:
                started = time.monotonic()
                proc = run.processes.popen([PYTHON, "-u", "benchplug.py", argument], cwd=folder, stdout=log, stderr=log)
            sock.recv()
            samples.append((time.monotonic() - started) * 1000)
        finally:
            if proc is not None:
                run.processes.kill(proc)
            sock.close()
            path.unlink(missing_ok=True)
    return samples


def measure(run: Run) -> list[Row]:
    spawn = spawn_to_handshake(run, 5 if run.quick else 10)
    settle_ms = WatchSettings().settle_ms
    loader = run.loader("l5", settle_ms=settle_ms, rescan_s=WatchSettings().rescan_s)
    loader.start()
    drops, in_loader, restarts = [], [], []
    for index in range(5 if run.quick else 20):
        name = f"drop{index}"
        staged = install_benchplug(loader.plugins_dir, name, folder_name=f".stage-{name}", sources=[f"dsrc{index}"])
        time.sleep(0.05)  # let the staging events pass; they poke no plugin
        mark = loader.mark()
        dropped_at = time.time()
        os.rename(staged, loader.plugins_dir / name)
        running = loader.wait_for("plugin.on_probation", since=mark, plugin=name)
        drops.append((event_time(running) - dropped_at) * 1000)
        spawned = loader.find("plugin.spawned", since=mark, plugin=name)[0]
        in_loader.append((event_time(running) - event_time(spawned)) * 1000)

        mark = loader.mark()
        killed_at = time.time()
        os.kill(running["pid"], signal.SIGKILL)
        again = loader.wait_for("plugin.on_probation", since=mark, plugin=name)
        restarts.append((event_time(again) - killed_at) * 1000)

        mark = loader.mark()
        shutil.rmtree(loader.plugins_dir / name)
        loader.wait_for("plugin.unloaded", since=mark, plugin=name)
    loader.stop()

    start_ms = median(spawn)
    limit = settle_ms + SLACK_MS + start_ms
    budget = f"settle {settle_ms} + {SLACK_MS} + start {start_ms:.0f}"
    backoff_ms = SupervisorSettings().restart_backoff_initial_s * 1000
    return [
        info_row(
            "lifecycle.spawn_handshake",
            "5",
            "sdk plugin spawn -> handshake (direct), p50",
            start_ms,
            "ms",
            f"p95 {percentile(spawn, 95):.0f} ms over {len(spawn)} spawns",
            spawn,
        ),
        limit_row(
            "lifecycle.drop_p50",
            "5",
            f"folder dropped -> running, p50 of {len(drops)}",
            median(drops),
            "ms",
            limit,
            samples=drops,
            ceiling=budget,
        ),
        limit_row(
            "lifecycle.drop_p95",
            "5",
            f"folder dropped -> running, p95 of {len(drops)}",
            percentile(drops, 95),
            "ms",
            limit,
            ceiling=budget,
            note=f"loader's own spawned -> running: p50 {median(in_loader):.0f} ms, "
            f"p95 {percentile(in_loader, 95):.0f} ms",
        ),
        limit_row(
            "lifecycle.restart_p50",
            "6",
            f"SIGKILL -> running again (1st restart), p50 of {len(restarts)}",
            median(restarts),
            "ms",
            RESTART_GOAL_MS,
            samples=restarts,
        ),
        limit_row(
            "lifecycle.restart_max",
            "6",
            "SIGKILL -> running again (1st restart), max",
            max(restarts),
            "ms",
            RESTART_GOAL_MS,
            note=f"includes the restart backoff of {backoff_ms:.0f} ms",
        ),
    ]
