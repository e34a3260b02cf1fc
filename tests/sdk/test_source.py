"""Sources: records arrive in order on the host's PULL; errors are reported, stop closes."""

from __future__ import annotations

import time

import pynng
import pytest

from tests.support.sdk_host import control, recv_json


def test_records_arrive_in_order_then_stop_closes_the_source(harness) -> None:
    host, proc = harness.plugin()
    pull = harness.pull("rule1_op1_0.ipc")
    marker = harness.ipc_dir / "marker"
    ctrl = control("seq", "source", config={"count": 500, "marker": str(marker)}, datasource="topic/a")
    assert host.command("start", ctrl) == "ok"
    records = [recv_json(pull) for _ in range(500)]
    assert records == [{"message": {"i": k, "ds": "topic/a"}, "meta": {"k": k}} for k in range(500)]
    assert host.command("stop", ctrl) == "ok"
    assert marker.read_text() == "seq closed\n"
    assert proc.poll() is None


def test_go_style_datasource_key_is_accepted(harness) -> None:
    host, _ = harness.plugin()
    pull = harness.pull("rule1_op1_0.ipc")
    ctrl = control("seq", "source", config={"count": 1})
    del ctrl["datasource"]
    ctrl["dataSource"] = "from-go-host"
    assert host.command("start", ctrl) == "ok"
    assert recv_json(pull)["message"]["ds"] == "from-go-host"


def test_instances_are_independent_and_stop_by_key(harness) -> None:
    host, _ = harness.plugin()
    pulls = [harness.pull(f"rule1_op1_{i}.ipc", timeout_ms=300) for i in (0, 1)]
    ctrls = [control("forever", "source", instance=i, config={"interval_ms": 10}) for i in (0, 1)]
    for ctrl in ctrls:
        assert host.command("start", ctrl) == "ok"
    for pull in pulls:
        assert recv_json(pull) == {"message": {"n": 0}, "meta": None}
    assert host.command("stop", ctrls[0]) == "ok"
    time.sleep(0.05)
    _drain(pulls[0])
    with pytest.raises(pynng.Timeout):
        pulls[0].recv()
    assert "n" in recv_json(pulls[1])["message"]


def test_a_source_that_raises_reports_the_error_and_the_process_lives_on(harness) -> None:
    host, proc = harness.plugin()
    pull = harness.pull("rule1_op1_0.ipc")
    assert host.command("start", control("boom", "source")) == "ok"
    assert recv_json(pull) == {"error": "RuntimeError: source exploded"}
    pull2 = harness.pull("rule2_op1_0.ipc")
    assert host.command("start", control("seq", "source", "rule2", config={"count": 1})) == "ok"
    assert recv_json(pull2)["message"]["i"] == 0
    assert proc.poll() is None


def _drain(sock: pynng.Pull0) -> None:
    while True:
        try:
            sock.recv(block=False)
        except pynng.TryAgain:
            return
