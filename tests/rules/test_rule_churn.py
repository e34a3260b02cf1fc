"""Rules created and deleted for a minute under batched load: the loader never exits, nothing is lost.

One rule (``keep``) runs the whole time, reading a steady source into a sink
plugin with ``requireAck``.  Around it, rules over a fast source are created
and deleted one after the other, each stopped in the middle of its burst of
batches: with portable sinks with and without acks, with the built-in ``nop``
sink, over a source of their own and over a shared one.  Deleting a rule
closes sockets that its worker thread may be using at that moment, which is
where a loader could die.  At the end the loader still runs, no rule went
wrong, and ``keep`` got every record in order exactly once.
"""

from __future__ import annotations

import itertools
import random
import time

import pytest

from tests.support.rules import (
    collected,
    install_collector,
    install_seqsrc,
    loader_for,
    rule,
    seq_config,
    stream,
    write_json,
)

CHURN_S = 60.0


def _churn_rule(data, rule_id: str, stream_name: str, kind: str, out) -> None:
    if kind == "nop":
        write_json(
            data / "rules" / f"{rule_id}.json",
            {"id": rule_id, "sql": f"SELECT n FROM {stream_name}", "actions": [{"nop": {}}]},
        )
    else:
        rule(data, rule_id, f"SELECT n, name FROM {stream_name}", out, require_ack=kind == "ack")


@pytest.mark.slow
@pytest.mark.timeout(CHURN_S + 120)
def test_rules_deleted_and_recreated_under_batched_load(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 10_000_000, "interval_ms": 2}, burst={"count": 20_000, "interval_ms": 0})
    stream(env["data"], "steady")
    stream(env["data"], "own", conf_key="burst")
    stream(env["data"], "shared", conf_key="burst", shared=True)
    keep = env["out"] / "keep.jsonl"
    rule(env["data"], "keep", "SELECT n FROM steady", keep)
    loader = loader_for(processes, env)  # batching is on by default
    loader.wait_for("rule.started", rule="keep", timeout=30)

    rng = random.Random(17)
    variants = itertools.cycle([(s, k) for s in ("own", "shared") for k in ("ack", "noack", "nop")])
    deadline = time.monotonic() + CHURN_S
    cycles = 0
    while time.monotonic() < deadline:
        assert loader.proc.poll() is None, f"the loader exited:\n{''.join(loader.raw[-60:])}"
        cycles += 1
        rule_id = f"churn{cycles}"
        stream_name, kind = next(variants)
        _churn_rule(env["data"], rule_id, stream_name, kind, env["out"] / f"{rule_id}.jsonl")
        loader.wait_for("rule.started", rule=rule_id, timeout=30)
        time.sleep(rng.uniform(0.05, 0.4))  # let batches flow, then delete mid-stream
        (env["data"] / "rules" / f"{rule_id}.json").unlink()
        loader.wait_for("rule.deleted", rule=rule_id, timeout=30)
        (env["out"] / f"{rule_id}.jsonl").unlink(missing_ok=True)

    assert loader.proc.poll() is None, f"the loader exited:\n{''.join(loader.raw[-60:])}"
    assert cycles >= 20, f"only {cycles} create/delete cycles in {CHURN_S:g}s"
    churned = [e for e in loader.find("rule.started") if e.get("rule", "").startswith("churn")]
    assert len(churned) == cycles
    assert loader.find("rule.error") == [] and loader.find("rule.stop_step_failed") == []
    assert [line for line in loader.raw if "Traceback" in line] == []
    (env["data"] / "rules" / "keep.json").unlink()  # the sink file is complete once the rule is gone
    loader.wait_for("rule.deleted", rule="keep", timeout=30)
    numbers = [row["n"] for row in collected(keep)]
    assert len(numbers) > 1000, len(numbers)
    assert numbers == list(range(1, len(numbers) + 1)), "the steady rule lost, repeated or reordered records"
    assert [e["reason"] for e in loader.find("rule.stopped", rule="keep")] == ["rule file removed"]
