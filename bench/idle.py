"""Figure 9: what an idle loader costs: CPU, and log lines, with 20 plugins that do nothing.

The loader runs with its default rescan period (``watch.rescan_s``: 5 s) and
20 idle sdk plugin folders (bench/plugins/benchplug.py, one source each, no
rule).  Once every one logged ``plugin.running`` and a few seconds passed,
the loader process's CPU time (user + system, all its threads, from
``/proc/<pid>/stat``; its plugins are other processes and not counted) is
read at the start and the end of a window (60 s, 20 s with ``--quick``: 12
and 4 rescans), and the lines it wrote to its log in the window are
counted.  CPU is given in percent of one core; log lines are extrapolated
to an hour from the window.
"""

from __future__ import annotations

import os
import time

from bench.harness import BenchError, Run, install_benchplug
from bench.report import Row, info_row, limit_row

PLUGINS = 20
RESCAN_S = 5.0
CPU_GOAL_PERCENT = 0.5
SETTLE_S = 3.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError as exc:
        raise BenchError(f"cannot read the CPU time of process {pid}: {exc}") from exc
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), counted after the ")"
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def measure(run: Run) -> list[Row]:
    window_s = 20.0 if run.quick else 60.0
    loader = run.loader("l9", settle_ms=300, rescan_s=RESCAN_S)
    for index in range(1, PLUGINS + 1):
        install_benchplug(loader.plugins_dir, f"quiet{index:02d}", sources=[f"qsrc{index}"])
    loader.start(timeout=60)
    for index in range(1, PLUGINS + 1):
        loader.wait_for("plugin.running", timeout=60, plugin=f"quiet{index:02d}")
    time.sleep(SETTLE_S)  # start-up work (imports, first scan) ends before the window
    lines_before = len(loader.raw)
    cpu_before, clock_before = cpu_seconds(loader.pid), time.monotonic()
    time.sleep(window_s)
    cpu_after, clock_after = cpu_seconds(loader.pid), time.monotonic()
    lines = len(loader.raw) - lines_before
    elapsed = clock_after - clock_before
    percent = (cpu_after - cpu_before) / elapsed * 100
    events = sorted({e.get("event", "?") for e in loader.events[-lines:]}) if lines else []
    loader.stop()
    per_hour = lines / elapsed * 3600
    return [
        limit_row(
            "idle.cpu",
            "9",
            f"idle loader CPU, {PLUGINS} plugins, no rule",
            percent,
            "% core",
            CPU_GOAL_PERCENT,
            note=f"{elapsed:.0f} s window, rescan every {RESCAN_S:g} s; "
            f"{(cpu_after - cpu_before) * 1000:.0f} ms of CPU",
        ),
        info_row(
            "idle.log_lines",
            "9",
            "log lines an idle loader writes, per hour",
            per_hour,
            "lines/h",
            note=f"{lines} lines in the {elapsed:.0f} s window, extrapolated"
            + (f"; events: {', '.join(events)}" if events else ""),
        ),
    ]
