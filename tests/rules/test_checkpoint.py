"""Window state checkpoints (rule option qos >= 1): saved, restored for the same definition only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

from loader.rules.checkpoint import Checkpointer, definition_digest, wants_checkpoints
from loader.rules.definitions import Action, RuleDef
from loader.rules.pipeline import RulePipeline
from loader.rules.windowed import EventTime
from tests.support.waiting import wait_until
from tests.support.windows import feed, windowed

COUNT3 = "SELECT collect(n) AS ns FROM s GROUP BY COUNTWINDOW(3)"


def _rule(sql: str = COUNT3, **options: object) -> RuleDef:
    return RuleDef(id="r", sql=sql, actions=(Action("log", {}),), options=dict(options))


def test_a_restored_count_window_goes_on_from_the_rows_it_held(tmp_path: Path) -> None:
    checkpoints = Checkpointer(tmp_path / "r.json", "d1")
    before = windowed(COUNT3)
    assert feed(before, [{"n": 1}, {"n": 2}]) == []
    checkpoints.save(before)

    after = windowed(COUNT3)
    checkpoints.load_into(after, "r")
    assert feed(after, [{"n": 3}]) == [[{"ns": [1, 2, 3]}]]


def test_a_checkpoint_of_another_definition_or_unreadable_is_not_used(tmp_path: Path, log_lines) -> None:
    before = windowed(COUNT3)
    feed(before, [{"n": 1}, {"n": 2}])
    Checkpointer(tmp_path / "r.json", "old").save(before)

    changed = windowed(COUNT3)
    Checkpointer(tmp_path / "r.json", "new").load_into(changed, "r")
    assert feed(changed, [{"n": 3}]) == []  # its window starts empty

    (tmp_path / "r.json").write_text("{not json")
    broken = windowed(COUNT3)
    Checkpointer(tmp_path / "r.json", "old").load_into(broken, "r")
    assert feed(broken, [{"n": 3}]) == []
    events = [line["event"] for line in log_lines()]
    assert "rule.checkpoint_skipped" in events and "rule.checkpoint_unreadable" in events


def test_event_time_rows_held_back_by_the_watermark_survive(tmp_path: Path) -> None:
    sql = "SELECT collect(ts) AS t FROM s GROUP BY TUMBLINGWINDOW(ms, 10)"
    checkpoints = Checkpointer(tmp_path / "r.json", "d")
    before = windowed(sql, EventTime("ts", 5))
    assert feed(before, [{"ts": 8}, {"ts": 12}, {"ts": 7}]) == []
    checkpoints.save(before)
    assert json.loads((tmp_path / "r.json").read_text())["state"]["watermark"]["held"]

    after = windowed(sql, EventTime("ts", 5))
    checkpoints.load_into(after, "r")
    assert feed(after, [{"ts": 16}]) == [[{"t": [7, 8]}]]


def test_what_a_checkpoint_belongs_to() -> None:
    assert not wants_checkpoints(_rule()) and not wants_checkpoints(_rule(qos=0))
    assert wants_checkpoints(_rule(qos=1)) and wants_checkpoints(_rule(qos=2))
    digest = definition_digest(_rule(qos=1))
    assert digest == definition_digest(_rule(qos=1, checkpointInterval=1000))  # how often is not what
    assert digest != definition_digest(_rule(COUNT3.replace("3", "4")))
    assert digest != definition_digest(_rule(isEventTime=True, lateTolerance=5))


def test_the_pipeline_restores_on_start_and_saves_when_it_stops(tmp_path: Path) -> None:
    """A rule stopped with two rows in its count window emits them with the third after a restart."""

    class Recorder:
        def __init__(self) -> None:
            self.metrics = SimpleNamespace(as_dict=dict)
            self.emissions: list = []

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

        def deliver_many(self, emissions: list) -> None:
            self.emissions += emissions

        def settle(self) -> None:
            pass

    def pipeline(sink: Recorder) -> RulePipeline:
        rule = windowed(COUNT3)
        checkpoints = Checkpointer(tmp_path / "r.json", "d", interval_ms=3_600_000)
        return RulePipeline("r", "s", rule.query, [sink], windowed=rule, checkpointer=checkpoints)

    async def scenario() -> list:
        first = pipeline(Recorder())
        await first.start()
        first.offer([{"n": 1}, {"n": 2}])
        await asyncio.to_thread(wait_until, lambda: first.buffer.bytes == 0 and len(first.buffer) == 0)
        await first.stop()
        assert (tmp_path / "r.json").exists()
        sink = Recorder()
        second = pipeline(sink)
        await second.start()
        second.offer([{"n": 3}])
        await asyncio.to_thread(wait_until, lambda: sink.emissions)
        await second.stop()
        return sink.emissions

    assert asyncio.run(scenario()) == [[{"ns": [1, 2, 3]}]]
