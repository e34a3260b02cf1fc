"""bench/profile.py's reading of py-spy's raw stacks: thread roles and the stage of each sample."""

from __future__ import annotations

from bench.profile import parse_raw, stage_of

RAW = """\
thread (101): rule-r1;Thread.run (threading.py:982);RulePipeline._work (loader/rules/pipeline.py:107);\
PortableSink._send_and_wait (loader/dataplane/sink.py:151);SinkChannel.send_raw (loader/wire/sink.py:175);\
SinkChannel._wait_ack (loader/wire/sink.py:230);Socket.recv (pynng/nng.py:470) 30
thread (101): rule-r1;Thread.run (threading.py:982);RulePipeline.on_records (loader/rules/pipeline.py:150);\
CompiledQuery.apply (loader/rules/sql/evaluate.py:130) 5
thread (102): source-r1_src;Thread.run (threading.py:982);SourceInstance._receive (loader/dataplane/source.py:85);\
SourceChannel._wait (loader/wire/source.py:172);Socket.recv (pynng/nng.py:470) 20
thread (0x67) 40
"""


def test_samples_are_counted_by_thread_role_and_stage() -> None:
    counts, roles = parse_raw(RAW)
    assert counts["rule worker"] == {"ack wait (in nng)": 30, "evaluation": 5}
    assert counts["source reader"] == {"receive (in nng)": 20}
    assert roles == {101: "rule worker", 102: "source reader", 0x67: "nng worker"}


def test_a_sample_outside_every_known_stage_is_other() -> None:
    assert stage_of(["<module> (x.py:1)", "f (x.py:2)"]) == "other"
