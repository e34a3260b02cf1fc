"""``GET /metrics``: the loader's state in Prometheus text format.

A custom collector reads the live state at each scrape (plugin states and
restarts, rule states and record counters) instead of mirroring it into
metric objects as it changes: nothing to keep in sync, nothing to leak when
a plugin or rule disappears.  prometheus-client does the text format.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from loader.api.view import LoaderView
from loader.plugins.status import STATES

RULE_STATES = ("running", "degraded", "stopped", "waiting", "error")
_NODE_COUNTER = re.compile(r"^(.+)_(records_in|records_out|exceptions)_total$")
_NODE_LAST_RECORD = re.compile(r"^(.+)_last_record_(in|out)_time$")


class LoaderCollector:
    def __init__(self, view: LoaderView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        yield from self._plugins()
        yield from self._rules()

    def _plugins(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "portable_loader_plugin_state", "1 for the state each plugin is in", labels=["plugin", "state"]
        )
        info = GaugeMetricFamily(
            "portable_loader_plugin_info", "the version each plugin runs", labels=["plugin", "version"]
        )
        restarts = CounterMetricFamily(
            "portable_loader_plugin_restarts", "restarts of each plugin's process", labels=["plugin"]
        )
        for status in self.view.plugin_statuses():
            for name in STATES:
                state.add_metric([status["name"], name], 1.0 if status["state"] == name else 0.0)
            info.add_metric([status["name"], status["version"] or ""], 1.0)
            restarts.add_metric([status["name"]], status["restarts"])
        yield from (state, info, restarts)

    def _rules(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "portable_loader_rule_state", "1 for the state each rule is in", labels=["rule", "state"]
        )
        counters = {
            kind: CounterMetricFamily(
                f"portable_loader_rule_{kind}", f"{kind.replace('_', ' ')} per rule node", labels=["rule", "node"]
            )
            for kind in ("records_in", "records_out", "exceptions")
        }
        last = {
            way: GaugeMetricFamily(
                f"portable_loader_rule_last_record_{way}_timestamp_seconds",
                f"when the last record went {way} of each rule node (0: never)",
                labels=["rule", "node"],
            )
            for way in ("in", "out")
        }
        for rule_id in sorted(self.view.rules()):
            status = self.view.rule_status(rule_id) or {}
            for name in RULE_STATES:
                state.add_metric([rule_id, name], 1.0 if status.get("status") == name else 0.0)
            for key, value in status.items():
                match = _NODE_COUNTER.match(key)
                if match:
                    counters[match.group(2)].add_metric([rule_id, match.group(1)], value)
                match = _NODE_LAST_RECORD.match(key)
                if match:
                    last[match.group(2)].add_metric([rule_id, match.group(1)], value / 1000)
        yield state
        yield from counters.values()
        yield from last.values()


def metrics_text(view: LoaderView) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoaderCollector(view))
    return generate_latest(registry)
