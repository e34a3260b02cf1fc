"""A plugin flooding its output cannot flood the loader's log (issue 14, finding 15)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from loader.plugins.output import BURST_LINES, LINES_PER_S, SUMMARY_EVERY_S, OutputLimiter
from tests.support.loader_process import make_plugin, start_loader

FIXTURES = Path(__file__).resolve().parent / "fixtures"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rate_and_the_rest_is_counted():
    clock = FakeClock()
    limiter = OutputLimiter(rate=10, burst=5, clock=clock)
    assert [limiter.allow(1) for _ in range(7)] == [True] * 5 + [False] * 2
    clock.now += 0.5  # five tokens back
    assert sum(limiter.allow(3) for _ in range(8)) == 5
    assert limiter.summary() is None  # not due yet: at most one summary per SUMMARY_EVERY_S
    assert limiter.summary(final=True) == (5, 2 * 1 + 3 * 3)
    assert limiter.summary(final=True) is None  # nothing held back since
    clock.now += 100  # the bucket holds at most the burst
    assert sum(limiter.allow(1) for _ in range(20)) == 5
    clock.now += SUMMARY_EVERY_S
    assert limiter.summary() == (15, 15)


def test_a_flooding_plugin_gets_a_bounded_share_of_the_log(processes, tmp_path, ipc_dir):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    folder = plugins / "flood"
    folder.mkdir()
    shutil.copy(FIXTURES / "flood.py", folder / "flood.py")
    total = 200_000
    (folder / "lines.txt").write_text(str(total))
    (folder / "flood.json").write_text(
        json.dumps({"version": "v1.0.0", "language": "python", "executable": "flood.py", "sources": ["nothing"]})
    )
    make_plugin(plugins, "calm", sources=["calm_src"])
    started = time.monotonic()
    loader = start_loader(
        processes, plugins, ipc_dir, tmp_path / "data", extra_config="supervisor: {restart_backoff_initial_s: 30}\n"
    )
    first = loader.wait_for("plugin.spawned", plugin="flood")
    summary = loader.wait_for("plugin.output_suppressed", plugin="flood", pid=first["pid"], timeout=60)
    elapsed = time.monotonic() - started
    logged = loader.find("plugin.output", plugin="flood", pid=first["pid"])
    assert len(logged) <= BURST_LINES + LINES_PER_S * elapsed, (len(logged), elapsed)
    # Every line is either logged or counted in the summaries (any due ones, then the final one).
    loader.wait_for("plugin.restarting", plugin="flood", timeout=30)  # the stream ended: the final summary is out
    summaries = loader.find("plugin.output_suppressed", plugin="flood", pid=first["pid"])
    logged = loader.find("plugin.output", plugin="flood", pid=first["pid"])
    assert len(logged) + sum(s["lines"] for s in summaries) == total + 1, (len(logged), summaries)
    assert summary["bytes"] > 0 and summary["level"] == "warning"
    # The neighbour was not disturbed, and the crash report still has the last lines.
    assert loader.find("plugin.running", plugin="calm")
    failed = loader.find("plugin.start_failed", plugin="flood", pid=first["pid"])[0]
    assert failed["output_tail"][-1] == "flood done"
