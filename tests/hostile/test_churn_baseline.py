"""Issue 14's churn test: a minute of plugins and rules coming and going leaves no fds, threads or memory behind.

One steady rule (``keep``: the ``seqsrc`` plugin's source into the
``collector`` plugin's sink, with acks) runs the whole time.  Around it, in
rounds: a new sdk plugin folder is dropped, a stream and a rule file over
its source are written, and once the rule runs the folder is removed (the
rule stops and waits), then the rule and stream files; and rules over the
steady stream calling the ``revert`` function into the ``collect`` sink are
created and deleted over REST.  The loader process's open files, threads
and resident memory are read from /proc after one warm-up round (imports,
pools and caches fill once) and again once the churn has settled.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.hostile.rules_env import (
    RULES_FIXTURES,
    install_collector,
    install_seqsrc,
    rss_mb,
    rule,
    source_config,
    stream,
    write_json,
)
from tests.hostile.survival import ping_within
from tests.support.api import Api, free_port
from tests.support.loader_process import pid_alive, start_loader
from tests.support.rules import collected
from tests.support.waiting import wait_until

CHURN_S = 55.0
REST_RULES_PER_ROUND = 3
#: An fd or two may be open at the moment of a reading without being a leak (a REST connection
#: the test's last call left in the server's keep-alive, an inotify watch being set up).
FD_SLACK = 2
#: The loader's thread pools (the default executor, up to 6 threads on 2 cores, and the 4 folder
#: readers) start a thread only when work overlaps, so after one warm-up round they may still grow:
#: baselines of 29 to 31 threads all ended at 30 or 31.  A leak is a thread per rule or plugin per
#: round, dozens over the churn (a rule left running: 31 -> 70), far past this.
THREAD_SLACK = 3
#: What the loader may grow by: a round leaves ~1 MB of events in memory (none are kept per rule
#: or plugin once gone), Python's allocator keeps arenas it freed, and the steady rule's metrics
#: and buffers. A plugin or rule left behind costs its sockets' nng buffers (MBs each) so a leak of
#: a dozen rounds shows.
RSS_SLACK_MB = 15.0
SETTLE_POLL_S = 10.0


def figures(pid: int) -> dict[str, float]:
    """The loader's open fds, threads and resident MB, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads, "rss_mb": rss_mb(pid)}


def _drop_plugin(plugins: Path, name: str, symbol: str) -> None:
    """A copy of the seqsrc plugin named ``name`` with source ``symbol``, moved in whole (as an install does)."""
    staging = plugins / f".{name}"
    staging.mkdir()
    program = (
        (RULES_FIXTURES / "seqsrc.py")
        .read_text()
        .replace('PluginConfig("seqsrc", sources={"seq"', f'PluginConfig("{name}", sources={{"{symbol}"')
    )
    (staging / f"{name}.py").write_text(program)
    write_json(
        staging / f"{name}.json",
        {"version": "v1.0.0", "language": "python", "executable": f"{name}.py", "sources": [symbol]},
    )
    staging.rename(plugins / name)


def _remove_plugin(plugins: Path, name: str) -> None:
    """Out of the folder at once (a rename), then deleted."""
    gone = plugins / f".gone-{name}"
    (plugins / name).rename(gone)
    for path in sorted(gone.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    gone.rmdir()


class Churn:
    """One round: a plugin with a rule file on it comes and goes, REST rules are created and deleted."""

    def __init__(self, loader, api: Api, plugins: Path, data: Path, out: Path) -> None:
        self.loader, self.api, self.plugins, self.data, self.out = loader, api, plugins, data, out
        self.rounds = 0

    def round(self) -> None:
        self.rounds += 1
        n = self.rounds
        name, symbol, stream_name, rule_id = f"churn{n}", f"seq{n}", f"s{n}", f"file{n}"
        _drop_plugin(self.plugins, name, symbol)
        self.loader.wait_for("plugin.running", timeout=30, plugin=name)
        stream(self.data, stream_name, symbol)
        rule(self.data, rule_id, f"SELECT n FROM {stream_name}", [{"nop": {}}])
        self.loader.wait_for("rule.started", timeout=30, rule=rule_id)
        for index in range(REST_RULES_PER_ROUND):
            self._rest_rule(f"rest{n}x{index}")
        _remove_plugin(self.plugins, name)
        self.loader.wait_for("plugin.unloaded", timeout=30, plugin=name)
        self.loader.wait_for("rule.stopped", timeout=30, rule=rule_id)
        (self.data / "rules" / f"{rule_id}.json").unlink()
        self.loader.wait_for("rule.deleted", timeout=30, rule=rule_id)
        (self.data / "streams" / f"{stream_name}.json").unlink()
        self.loader.wait_for("stream.removed", timeout=30, stream=stream_name)

    def _rest_rule(self, rule_id: str) -> None:
        out = self.out / f"{rule_id}.jsonl"
        body = {
            "id": rule_id,
            "sql": "SELECT n, revert(name) AS r FROM steady",
            "actions": [{"collect": {"path": str(out), "requireAck": True}}, {"nop": {}}],
        }
        assert self.api.ok("POST", "/rules", body, expect=201) == f"Rule {rule_id} was created successfully."
        assert self.api.ok("GET", f"/rules/{rule_id}/status")["state"] == "running"
        self.api.ok("DELETE", f"/rules/{rule_id}")
        self.loader.wait_for("rule.deleted", timeout=30, rule=rule_id)
        out.unlink(missing_ok=True)


def _records(api: Api) -> int:
    return api.ok("GET", "/rules/keep/status")["source_steady_0_records_in_total"]


def _settled(pid: int, baseline: dict[str, float]) -> dict[str, float]:
    """Poll the figures until fds and threads are back within their slack, or the time is up."""
    deadline = time.monotonic() + SETTLE_POLL_S
    while True:
        now = figures(pid)
        back = now["fds"] <= baseline["fds"] + FD_SLACK and now["threads"] <= baseline["threads"] + THREAD_SLACK
        if back or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


@pytest.mark.slow
def test_a_minute_of_plugin_and_rule_churn_returns_to_baseline(processes, tmp_path, ipc_dir):
    plugins, data, etc, out = tmp_path / "plugins", tmp_path / "data", tmp_path / "etc", tmp_path / "out"
    plugins.mkdir()
    out.mkdir()
    install_seqsrc(plugins)
    install_collector(plugins)
    source_config(etc, "seq", count=10_000_000, interval_ms=5)
    stream(data, "steady", "seq")
    keep = out / "keep.jsonl"
    rule(data, "keep", "SELECT n FROM steady", [{"collect": {"path": str(keep), "requireAck": True}}])
    port = free_port()
    loader = start_loader(processes, plugins, ipc_dir, data, extra_config=f"etc_dir: {etc}\nrest: 127.0.0.1:{port}\n")
    api = Api(loader, f"http://127.0.0.1:{port}")
    loader.wait_for("rule.started", timeout=30, rule="keep")
    steady_pids = {
        name: loader.wait_for("plugin.running", timeout=30, plugin=name)["pid"] for name in ("seqsrc", "collector")
    }
    pid = loader.proc.pid
    churn = Churn(loader, api, plugins, data, out)

    churn.round()  # warm-up: imports, pools and caches fill once
    baseline, records_before = _settled(pid, figures(pid)), _records(api)
    deadline = time.monotonic() + CHURN_S
    while time.monotonic() < deadline:
        churn.round()
        assert loader.proc.poll() is None, f"the loader exited:\n{''.join(loader.raw[-60:])}"
    records_mid = _records(api)
    after = _settled(pid, baseline)
    print(
        f"\n{churn.rounds - 1} rounds in {CHURN_S:g}s; baseline {baseline}; after {after}; "
        f"keep records {records_before} -> {records_mid}"
    )

    assert after["fds"] <= baseline["fds"] + FD_SLACK, (baseline, after)
    assert after["threads"] <= baseline["threads"] + THREAD_SLACK, (baseline, after)
    assert after["rss_mb"] - baseline["rss_mb"] <= RSS_SLACK_MB, (baseline, after)
    assert churn.rounds >= 8, f"only {churn.rounds} rounds"
    assert loader.proc.poll() is None
    ping_within(api.url)
    assert all(pid_alive(p) for p in steady_pids.values()), steady_pids
    assert records_mid > records_before, (records_before, records_mid)
    assert wait_until(lambda: _records(api) > records_mid, timeout=5), "the steady rule stopped after the churn"
    assert loader.find("rule.error") == [] and loader.find("task.failed") == []
    assert [line for line in loader.raw if "Traceback" in line] == []
    # Nothing of the steady rule was lost: once it is gone its sink's file holds 1..N in order.
    (data / "rules" / "keep.json").unlink()
    loader.wait_for("rule.deleted", timeout=30, rule="keep")
    numbers = [row["n"] for row in collected(keep)]
    assert len(numbers) > 1000 and numbers == list(range(1, len(numbers) + 1)), len(numbers)
