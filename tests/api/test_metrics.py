"""GET /metrics: plugin states and restarts, rule states and record counters, in Prometheus text format."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.api import start_api
from tests.support.loader_process import make_plugin
from tests.support.metrics import scrape, value
from tests.support.rules import install_seqsrc, seq_config, stream, write_json
from tests.support.waiting import wait_until


def test_metrics_follow_plugins_and_rules(processes, tmp_path: Path, ipc_dir: Path):
    plugins, data, etc = tmp_path / "plugins", tmp_path / "data", tmp_path / "etc"
    plugins.mkdir()
    make_plugin(plugins, "car", version="v3.1.0")
    install_seqsrc(plugins)
    seq_config(etc, default={"count": 100000, "interval_ms": 2})
    stream(data)
    write_json(
        data / "rules" / "r1.json", {"id": "r1", "sql": "SELECT n FROM demo WHERE n % 2 = 0", "actions": [{"nop": {}}]}
    )
    api = start_api(processes, plugins, ipc_dir, data, extra=f"etc_dir: {etc}\n")
    running = api.loader.wait_for("plugin.running", plugin="car")
    samples = scrape(api)
    assert value(samples, "portable_loader_plugin_state", plugin="car", state="running") == 1
    assert value(samples, "portable_loader_plugin_state", plugin="car", state="crashloop") == 0
    assert value(samples, "portable_loader_plugin_info", plugin="car", version="v3.1.0") == 1
    assert value(samples, "portable_loader_rule_state", rule="r1", state="running") == 1

    os.kill(running["pid"], signal.SIGKILL)
    api.loader.wait_for("plugin.running", plugin="car", count=2)

    def counted() -> dict:
        now = scrape(api)
        return (
            now
            if (value(now, "portable_loader_rule_records_out_total", rule="r1", node="sink_nop_0_0") or 0) > 50
            else {}
        )

    samples = wait_until(counted)
    assert samples, "no records counted at the nop sink"
    assert value(samples, "portable_loader_plugin_restarts_total", plugin="car") == 1
    records_in = value(samples, "portable_loader_rule_records_in_total", rule="r1", node="source_demo_0")
    passed = value(samples, "portable_loader_rule_records_out_total", rule="r1", node="op_project_0")
    assert records_in >= 100 and abs(passed - records_in / 2) <= 1
