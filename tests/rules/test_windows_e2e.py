"""Windowed rules end to end: real loader, real source, function and sink plugin processes.

The collector sink writes each message it gets; a message is a row, or (once
sinks send eKuiper's arrays) a whole emission.  The checks hold either way:
the rows, in order, and the emission boundaries whenever messages are arrays.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.rules import (
    collected,
    install,
    install_collector,
    install_seqsrc,
    loader_for,
    rule,
    seq_config,
    sink_messages,
    stream,
    wait_collected,
    write_json,
)
from tests.support.waiting import wait_until


def assert_emissions(path: Path, expected: list[list[dict]]) -> None:
    """The rows of ``expected`` in order; and its emissions exactly when the sink sends arrays."""
    got = sink_messages(path)
    assert collected(path) == [row for emission in expected for row in emission]
    if any(isinstance(m, list) for m in got):
        assert got == expected


def test_count_window_with_a_portable_aggregate(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    install(env["plugins"], "aggfn", functions=["spread"])
    seq_config(env["etc"], default={"count": 10})
    stream(env["data"])
    out = env["out"] / "w.jsonl"
    rule(
        env["data"],
        "w",
        "SELECT count(*) AS c, sum(n) AS s, collect(n) AS ns, spread(n) AS sp FROM demo GROUP BY COUNTWINDOW(4)",
        out,
    )
    loader_for(processes, env)
    wait_collected(out, 2)
    time.sleep(0.3)  # rows 9 and 10 never fill a third window
    assert_emissions(
        out, [[{"c": 4, "s": 10, "ns": [1, 2, 3, 4], "sp": 3}], [{"c": 4, "s": 26, "ns": [5, 6, 7, 8], "sp": 3}]]
    )


def test_event_time_tumbling_window_groups_and_orders(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 10})
    sql = 'CREATE STREAM demo () WITH (TYPE="seq", DATASOURCE="t1", TIMESTAMP="n")'
    write_json(env["data"] / "streams" / "demo.json", {"sql": sql})
    out = env["out"] / "e.jsonl"
    rule(
        env["data"],
        "e",
        "SELECT n % 2 AS odd, count(*) AS c, window_start() AS ws, window_end() AS we FROM demo "
        "GROUP BY n % 2, TUMBLINGWINDOW(ms, 4) ORDER BY odd DESC",
        out,
        options={"isEventTime": True},
    )
    loader = loader_for(processes, env)
    wait_collected(out, 4)
    time.sleep(0.3)
    # n is the event time in ms: windows [0,4) [4,8) fire once the watermark (10) passes their end; [8,12) waits.
    assert_emissions(
        out,
        [
            [{"odd": 1, "c": 2, "ws": 0, "we": 4}, {"odd": 0, "c": 1, "ws": 0, "we": 4}],
            [{"odd": 1, "c": 2, "ws": 4, "we": 8}, {"odd": 0, "c": 2, "ws": 4, "we": 8}],
        ],
    )
    assert loader.find("rule.started", rule="e")


def test_processing_time_window_closes_without_further_records(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 5})
    stream(env["data"])
    out = env["out"] / "p.jsonl"
    rule(env["data"], "p", "SELECT count(*) AS c FROM demo GROUP BY TUMBLINGWINDOW(ms, 300)", out)
    loader_for(processes, env)
    deadline = time.monotonic() + 20
    while sum(r["c"] for r in collected(out)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(r["c"] for r in collected(out)) == 5  # the source idles after 5 records: the clock closed the window


def test_event_time_without_a_timestamp_field_is_refused(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    stream(env["data"])
    rule(
        env["data"],
        "bad",
        "SELECT count(*) FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)",
        env["out"] / "bad.jsonl",
        options={"isEventTime": True},
    )
    loader = loader_for(processes, env)
    error = loader.wait_for("rule.error", rule="bad")
    assert 'add TIMESTAMP="<field>"' in error["error"]


def _held_rows(checkpoint: Path) -> int:
    try:
        return len(json.loads(checkpoint.read_text())["state"]["window"]["entries"])
    except (OSError, ValueError, KeyError):
        return -1


def test_a_window_keeps_its_rows_across_a_loader_restart_with_qos(processes, env):
    """qos 1: the three rows of the first run stay in the count window (checkpointed, and again when the
    loader stops) and complete it with the second run's rows; without the checkpoint nothing would fire."""
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 3})
    stream(env["data"])
    out = env["out"] / "q.jsonl"
    options = {"qos": 1, "checkpointInterval": 50}
    rule(env["data"], "q", "SELECT collect(n) AS ns FROM demo GROUP BY COUNTWINDOW(5)", out, options=options)
    checkpoint = env["data"] / "checkpoints" / "q.json"
    first = loader_for(processes, env)
    wait_until(lambda: _held_rows(checkpoint) == 3, what="the three rows in the window's checkpoint")
    assert first.terminate() == 0

    second = loader_for(processes, env)
    second.wait_for("rule.checkpoint_restored", rule="q")
    assert second.find("rule.checkpoint_restored", rule="q")[0]["rows"] == 3
    wait_collected(out, 1)
    assert_emissions(out, [[{"ns": [1, 2, 3, 1, 2]}]])
