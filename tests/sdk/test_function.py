"""Functions: one inverted channel per symbol; Validate, Exec, IsAggregate; errors as state false."""

from __future__ import annotations

import time

from tests.support.sdk_host import control, func_meta


def start_function(harness, symbol: str = "concat", keepalive_ms: int = 5000):
    host, proc = harness.plugin(keepalive_ms=keepalive_ms)
    fn = harness.function_host(symbol)
    assert host.command("start", control(symbol, "func")) == "ok"
    fn.wait_handshake()
    return host, proc, fn


def test_validate_exec_and_is_aggregate(harness) -> None:
    _, _, fn = start_function(harness)
    assert fn.invoke("Validate", ["a"]) == {"state": True, "result": ""}
    assert fn.invoke("Validate", []) == {"state": False, "result": "concat needs at least one argument"}
    assert fn.invoke("IsAggregate", None) == {"state": True, "result": False}
    # Exec receives only the values; the last element is the function meta, seen through ctx.
    reply = fn.invoke("Exec", ["ab", 1, None, func_meta("r7", "o3")])
    assert reply == {"state": True, "result": {"joined": "ab1None", "rule": "r7", "op": "o3"}}
    assert fn.invoke("Nope", None) == {
        "state": False,
        "result": "unknown function call 'Nope': expected Validate, Exec or IsAggregate",
    }


def test_errors_are_replies_not_crashes(harness) -> None:
    _, proc, fn = start_function(harness, "divide")
    assert fn.invoke("IsAggregate", None) == {"state": True, "result": True}
    assert fn.invoke("Exec", [6, 3, func_meta()]) == {"state": True, "result": 2.0}
    assert fn.invoke("Exec", [1, 0, func_meta()]) == {
        "state": False,
        "result": "divide: ZeroDivisionError: division by zero",
    }
    assert fn.invoke("Exec", [1, 2])["state"] is False  # no meta string
    assert fn.invoke("Exec", [4, 2, func_meta()]) == {"state": True, "result": 2.0}
    assert proc.poll() is None


def test_second_start_shares_the_channel_and_the_last_stop_closes_it(harness) -> None:
    host, _, fn = start_function(harness)
    assert host.command("start", control("concat", "func")) == "ok"
    time.sleep(0.1)
    assert len(fn.sock.pipes) == 1
    assert fn.invoke("Exec", ["x", func_meta()])["result"]["joined"] == "x"
    assert host.command("stop", control("concat", "func")) == "ok"
    assert fn.invoke("Exec", ["y", func_meta()])["result"]["joined"] == "y"
    assert host.command("stop", control("concat", "func")) == "ok"
    deadline = time.monotonic() + 2
    while fn.sock.pipes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(fn.sock.pipes) == 0


def test_function_channel_keepalive_and_lost_call_is_resent(harness) -> None:
    _, _, fn = start_function(harness, keepalive_ms=200)
    time.sleep(0.5)  # the plugin has handshaken again meanwhile: our first reply is lost
    assert fn.invoke("Exec", ["late", func_meta()])["result"]["joined"] == "late"
    assert fn.handshakes >= 2
