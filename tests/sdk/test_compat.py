"""eKuiper direction: run with eKuiper's plain argument, an sdk plugin behaves like one built on
eKuiper's SDK -- sockets under /tmp, named by the PluginConfig name, 5 s keepalive.

This test must use /tmp (eKuiper hard-codes it), so every name carries a random
suffix and every socket file is removed afterwards.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.support.sdk_host import control, func_meta, launch, recv_json

TMP = Path("/tmp")


def test_plain_argument_serves_source_sink_and_function_under_tmp(harness) -> None:
    tag = secrets.token_hex(4)
    name, func, rule = f"sdkcompat_{tag}", f"sdkcompatfn_{tag}", f"sdkcompatrule_{tag}"
    files = [TMP / f"plugin_{name}.ipc", TMP / f"func_{func}.ipc"]
    files += [TMP / f"{rule}_op{i}_0{suffix}.ipc" for i in (1, 2) for suffix in ("", "_ack")]
    proc = None
    try:
        host = harness.control_host(name, ipc_dir=TMP)
        env = {"SDK_FIXTURE_NAME": name, "SDK_FIXTURE_FUNC": func}
        proc = launch(harness.processes, json.dumps({"sendTimeout": 1000}), harness.ipc_dir, env=env)
        host.wait_handshake()

        pull = harness.pull(f"{rule}_op1_0.ipc", ipc_dir=TMP)
        assert host.command("start", control("seq", "source", rule, "op1", config={"count": 3})) == "ok"
        assert [recv_json(pull)["message"]["i"] for _ in range(3)] == [0, 1, 2]

        ack = harness.pull(f"{rule}_op2_0_ack.ipc", ipc_dir=TMP)
        out = harness.ipc_dir / "out.txt"
        sink = control("collect", "sink", rule, "op2", config={"mode": "manual", "out": str(out), "requireAck": True})
        assert host.command("start", sink) == "ok"
        push = harness.push(f"{rule}_op2_0.ipc", ipc_dir=TMP)
        push.send(b'{"x": 1}')
        assert recv_json(ack) == {}
        assert out.read_bytes() == b'{"x": 1}\n'

        fn = harness.function_host(func, ipc_dir=TMP)
        assert host.command("start", control(func, "func")) == "ok"
        fn.wait_handshake()
        assert fn.invoke("Exec", ["a", "b", func_meta(rule)])["result"]["joined"] == "ab"

        lines = (harness.ipc_dir / "stderr.log").read_text()
        assert f'"url": "ipc:///tmp/plugin_{name}.ipc"' in lines
        assert proc.poll() is None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=5)
        harness.close()
        for path in files:
            path.unlink(missing_ok=True)
