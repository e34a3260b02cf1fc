"""A minimal synchronous host for driving sdk plugins in tests.

Raw pynng sockets in the test process play the loader's part of the wire
protocol (PROTOCOL.md), so the tests exercise the sdk against the protocol
itself rather than against the loader's implementation of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pynng

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sdk"
TEST_PLUGIN = FIXTURES / "testplugin.py"
FIXTURE_NAME = "sdkfixture"


def url(ipc_dir: Path | str, filename: str) -> str:
    return f"ipc://{os.path.join(str(ipc_dir), filename)}"


def ext_arg(ipc_dir: Path, plugin_name: str = FIXTURE_NAME, keepalive_ms: int = 5000, **extra: Any) -> str:
    """argJSON as our loader sends it: eKuiper's key plus the portableLoader extension."""
    ext = {"protocol": 1, "pluginName": plugin_name, "ipcDir": str(ipc_dir), "keepaliveMs": keepalive_ms, **extra}
    return json.dumps({"sendTimeout": 1000, "portableLoader": ext})


def control(
    symbol: str,
    plugin_type: str,
    rule: str = "rule1",
    op: str = "op1",
    instance: int = 0,
    config: dict | None = None,
    datasource: str = "",
) -> dict:
    if plugin_type == "func":
        rule, op = "", ""
    return {
        "symbolName": symbol,
        "meta": {"ruleId": rule, "opId": op, "instanceId": instance},
        "pluginType": plugin_type,
        "dataSource": datasource,
        "datasource": datasource,
        "config": config or {},
    }


class InvertedRep:
    """Host end of an inverted channel (control or function): REP listening, plugin REQ dials."""

    def __init__(self, address: str, timeout_ms: int = 5000) -> None:
        self.address = address
        self.sock = pynng.Rep0(recv_timeout=timeout_ms)
        self.sock.listen(address)
        self.handshakes = 0

    def wait_handshake(self) -> bytes:
        message = self.sock.recv()
        assert message.startswith(b"h"), message
        self.handshakes += 1
        return message

    def call(self, payload: bytes) -> bytes:
        """Send ``payload`` as the reply to the held request and return the plugin's answer.

        A handshake instead of an answer means the plugin timed out and the
        payload was lost: send it again, as a real host must.
        """
        self.sock.send(payload)
        while True:
            message = self.sock.recv()
            if not message.startswith(b"h"):
                return message
            self.handshakes += 1
            self.sock.send(payload)

    def close(self) -> None:
        self.sock.close()


class ControlHost(InvertedRep):
    def command(self, cmd: str, ctrl: dict) -> str:
        payload = json.dumps({"cmd": cmd, "arg": json.dumps(ctrl)}).encode()
        return self.call(payload).decode()


class FunctionHost(InvertedRep):
    def invoke(self, func: str, arg: Any) -> dict:
        return json.loads(self.call(json.dumps({"func": func, "arg": arg}).encode()))


def func_meta(rule: str = "rule1", op: str = "op1", instance: int = 0, func_id: int = 0) -> str:
    return json.dumps({"ruleId": rule, "opId": op, "instanceId": instance, "funcId": func_id})


def launch(
    processes: Any,
    arg: str | None,
    log_dir: Path,
    program: Path = TEST_PLUGIN,
    env: dict | None = None,
    stdout: Any = subprocess.DEVNULL,
) -> subprocess.Popen:
    """Start a plugin the way a host does: ``<python> -u <file> '<argJSON>'`` in its folder.

    stderr goes to ``log_dir/stderr.log`` so a chatty plugin can never block on a full pipe.
    """
    args = [sys.executable, "-u", str(program)] + ([arg] if arg is not None else [])
    stderr = open(log_dir / "stderr.log", "ab")
    try:
        return processes.popen(
            args, cwd=str(program.parent), stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})}
        )
    finally:
        stderr.close()


def stderr_lines(log_dir: Path) -> list[dict]:
    """The plugin's stderr, each line decoded as JSON (all must be)."""
    text = (log_dir / "stderr.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Harness:
    """One test's host side: every socket it opens is closed at teardown."""

    def __init__(self, ipc_dir: Path, processes: Any) -> None:
        self.ipc_dir = ipc_dir
        self.processes = processes
        self._sockets: list[Any] = []

    def _track(self, sock: Any) -> Any:
        self._sockets.append(sock)
        return sock

    def control_host(self, plugin_name: str = FIXTURE_NAME, ipc_dir: Path | None = None) -> ControlHost:
        return self._track(ControlHost(url(ipc_dir or self.ipc_dir, f"plugin_{plugin_name}.ipc")))

    def function_host(self, symbol: str, ipc_dir: Path | None = None) -> FunctionHost:
        return self._track(FunctionHost(url(ipc_dir or self.ipc_dir, f"func_{symbol}.ipc")))

    def pull(self, filename: str, timeout_ms: int = 5000, ipc_dir: Path | None = None) -> pynng.Pull0:
        sock = self._track(pynng.Pull0(recv_timeout=timeout_ms))
        sock.listen(url(ipc_dir or self.ipc_dir, filename))
        return sock

    def push(self, filename: str, ipc_dir: Path | None = None) -> pynng.Push0:
        sock = self._track(pynng.Push0(send_timeout=5000))
        sock.dial(url(ipc_dir or self.ipc_dir, filename), block=True)
        return sock

    def plugin(self, keepalive_ms: int = 5000, **launch_kw: Any) -> tuple[ControlHost, subprocess.Popen]:
        """Control host + plugin process with our extension, handshake done."""
        host = self.control_host()
        proc = launch(self.processes, ext_arg(self.ipc_dir, keepalive_ms=keepalive_ms), self.ipc_dir, **launch_kw)
        host.wait_handshake()
        return host, proc

    def close(self) -> None:
        for sock in reversed(self._sockets):
            sock.close()


def recv_json(sock: Any) -> Any:
    return json.loads(sock.recv())
