"""A ``portable-loader package`` zip runs under a host that knows nothing of ``sdk``.

eKuiper starts a Python plugin with its own interpreter in the plugin's
folder and passes only ``{"sendTimeout": 1000}``.  Here that interpreter is
the cached venv holding only pynng and the official ``ekuiper`` SDK
(tests/support/ekuiper_env.py), and the host is raw pynng sockets in /tmp, as
eKuiper's are.  A plugin written on ``sdk`` must handshake, start its source
and deliver records: before the zip carried the sdk it died on
``ModuleNotFoundError: No module named 'sdk'``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pynng

from tests.support.ekuiper_env import ensure_ekuiper_python
from tests.support.sdk_host import ControlHost, url

PLUGIN = """
import threading
from sdk import PluginConfig, Source, start


class Ticks(Source):
    def __init__(self):
        self.stopped = threading.Event()

    def configure(self, datasource, conf):
        self.datasource = datasource

    def open(self, ctx):
        n = 0
        while not self.stopped.wait(0.02):
            n += 1
            ctx.emit({"n": n, "datasource": self.datasource}, None)

    def close(self, ctx):
        self.stopped.set()


start(PluginConfig("NAME", sources={"ticks": Ticks}))
"""


def make_plugin(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / f"{name}.json").write_text(
        json.dumps({"version": "v1.0.0", "language": "python", "executable": f"{name}.py", "sources": ["ticks"]})
    )
    (folder / f"{name}.py").write_text(PLUGIN.replace("NAME", name))
    return folder


def package(folder: Path, output: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "loader", "package", str(folder), "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_packaged_sdk_plugin_runs_under_an_ekuiper_like_host(tmp_path: Path, processes) -> None:
    name = f"pkgcompat{os.getpid()}"  # eKuiper's sockets live in /tmp: a name no other run uses
    output = package(make_plugin(tmp_path, name), tmp_path / "plugin.zip")
    assert "files of the sdk package included" in output
    installed = tmp_path / "ekuiper" / name
    with zipfile.ZipFile(tmp_path / "plugin.zip") as archive:
        assert f"{name}.py" in archive.namelist() and "sdk/protocol/messages.py" in archive.namelist()
        archive.extractall(installed)

    python = ensure_ekuiper_python()
    probe = subprocess.run([str(python), "-c", "import sdk"], cwd=tmp_path, capture_output=True, text=True)
    assert "No module named 'sdk'" in probe.stderr, "the host's interpreter must not have sdk by itself"

    control = ControlHost(url("/tmp", f"plugin_{name}.ipc"))
    data = pynng.Pull0(recv_timeout=10000)
    try:
        data.listen(url("/tmp", f"{name}_op1_0.ipc"))  # {ruleId}_{opId}_{instanceId}.ipc
        plugin = processes.popen(
            [str(python), f"{name}.py", json.dumps({"sendTimeout": 1000})],
            cwd=installed,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            control.wait_handshake()
        except pynng.Timeout:
            plugin.kill()
            raise AssertionError(f"no handshake; the plugin said: {plugin.communicate()[1].decode()[-2000:]}") from None
        # eKuiper sends the data source only as dataSource (EKUIPER.md).
        start = {
            "symbolName": "ticks",
            "meta": {"ruleId": name, "opId": "op1", "instanceId": 0},
            "pluginType": "source",
            "dataSource": "topic/a",
            "config": {},
        }
        assert control.command("start", start) == "ok"
        record = json.loads(data.recv())
        assert record["message"]["n"] >= 1
        assert control.command("stop", start) == "ok"
        plugin.terminate()
        plugin.wait(10)
    finally:
        control.close()
        data.close()
        for leftover in (f"plugin_{name}.ipc", f"{name}_op1_0.ipc"):
            Path("/tmp", leftover).unlink(missing_ok=True)
