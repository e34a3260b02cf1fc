"""Finding 16: 200 idle plugins and 400 stopped rule files cost next to nothing, and rules still get created.

The probe measured 80% of a core for 200 idle plugins, 49% for 400 stopped
rule files (watcher events from the loader's own reads), and rule creation
falling from 158/min to 1/min with 200 plugins and 260 rules.  Here the
same scale runs in a real loader: 200 plugin processes (the raw test plugin,
the cheapest real one: a control channel answering keepalives, no sdk), one
sdk source plugin the created rules read from, and 400 rule files that do
not run: 200 with ``triggered: false`` (stopped) and 200 over a stream that
is not defined (waiting).  The loader's own CPU time (its plugins are other
processes) is read from /proc over a window, with the loader's default
rescan period as on a device, then 30 rules are created over REST and timed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from loader.config import WatchSettings
from tests.hostile.rules_env import install_seqsrc, rule, source_config, stream, write_json
from tests.support.api import Api, free_port
from tests.support.loader_process import make_plugin, start_loader

IDLE_PLUGINS = 200
STOPPED_RULES = 200
WAITING_RULES = 200
CREATED_RULES = 30
SETTLE_S = 3.0
WINDOW_S = 20.0
#: Issue 11's goal is 0.5% of a core for 20 plugins; ten times the plugins and 400 rule files cost
#: more, because keepalives and rescans grow with the count.  Measured on 2 cores: 2.45-3.35%, of which
#: about 2 points are the keepalives (200 plugins, one each per 5 s, about 0.5 ms of loader CPU each:
#: with one per minute the loader takes 1.1%) and about 0.25 the 400 rule files.  The bound leaves room
#: for a loaded CI machine and is still 16 times below the 80% the finding measured.
CPU_GOAL_PERCENT = 5.0
#: Without plugins the probe created 158 rules a minute; with 200 plugins it fell to 1.
RULES_PER_MIN_GOAL = 60.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


def _populate(plugins: Path, data: Path, etc: Path) -> None:
    for index in range(IDLE_PLUGINS):
        make_plugin(plugins, f"idle{index:03d}")
    install_seqsrc(plugins)
    source_config(etc, "seq", count=1)  # one record per rule, then the source idles
    stream(data, "steady", "seq")
    for index in range(STOPPED_RULES):
        write_json(
            data / "rules" / f"stopped{index:03d}.json",
            {"id": f"stopped{index:03d}", "sql": "SELECT n FROM steady", "actions": [{"nop": {}}], "triggered": False},
        )
    for index in range(WAITING_RULES):
        rule(data, f"waiting{index:03d}", "SELECT n FROM nowhere", [{"nop": {}}])


@pytest.mark.slow
def test_two_hundred_idle_plugins_and_four_hundred_stopped_rules(processes, tmp_path, ipc_dir):
    plugins, data, etc = tmp_path / "plugins", tmp_path / "data", tmp_path / "etc"
    plugins.mkdir()
    _populate(plugins, data, etc)
    port = free_port()
    started = time.monotonic()
    loader = start_loader(
        processes,
        plugins,
        ipc_dir,
        data,
        wait_ready=False,
        rescan_s=WatchSettings().rescan_s,
        log_level="info",
        extra_config=f"etc_dir: {etc}\nrest: 127.0.0.1:{port}\n",
    )
    api = Api(loader, f"http://127.0.0.1:{port}")
    loader.wait_for("loader.scan_complete", timeout=90)
    loader.wait_for("plugin.running", timeout=90, count=IDLE_PLUGINS + 1)
    all_running_s = time.monotonic() - started
    states = [r["state"] for r in api.ok("GET", "/rules")]
    assert states.count("stopped") == STOPPED_RULES and states.count("waiting") == WAITING_RULES, states

    time.sleep(SETTLE_S)  # start-up work (the last probations, the first rescans) ends before the window
    lines_before = len(loader.raw)
    cpu_before, clock_before = cpu_seconds(loader.proc.pid), time.monotonic()
    time.sleep(WINDOW_S)  # the window itself is what is measured
    cpu_used, elapsed = cpu_seconds(loader.proc.pid) - cpu_before, time.monotonic() - clock_before
    percent = cpu_used / elapsed * 100
    logged = loader.raw[lines_before:]

    created_at = time.monotonic()
    for index in range(CREATED_RULES):
        body = {"id": f"made{index:02d}", "sql": "SELECT n FROM steady", "actions": [{"nop": {}}]}
        api.ok("POST", "/rules", body, expect=201)
        assert api.ok("GET", f"/rules/{body['id']}/status")["state"] == "running"
    per_min = CREATED_RULES / (time.monotonic() - created_at) * 60
    print(
        f"\n{IDLE_PLUGINS + 1} plugins running after {all_running_s:.1f} s; idle loader CPU {percent:.2f}% "
        f"of a core ({cpu_used * 1000:.0f} ms in {elapsed:.1f} s), {len(logged)} log lines; "
        f"{per_min:.0f} rules/min created over REST"
    )
    assert percent <= CPU_GOAL_PERCENT, f"idle loader took {percent:.2f}% of a core"
    assert logged == [], f"an idle loader logged: {logged[:5]}"
    assert per_min >= RULES_PER_MIN_GOAL, f"{per_min:.0f} rules/min"
    assert loader.proc.poll() is None
