"""Finding 17: NaN and Infinity from a source become null in the JSON log and in sink payloads.

Before, a Python source's ``json.dumps`` NaN went straight into the log
(1,402 of 1,415 lines were not strict JSON) and into sink payloads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from loader.wire.codec import decode_source_items
from sdk.protocol.messages import encode_sink, encode_sink_batch
from tests.hostile.helpers import snapshot
from tests.support.loader_process import start_loader
from tests.support.rules import install_collector, rule, stream, wait_collected

NAN_SOURCE = """
import threading
from sdk import Context, PluginConfig, Source, start

class Odd(Source):
    def configure(self, datasource, conf):
        self.stopped = threading.Event()

    def open(self, ctx: Context):
        for n in range(1, 11):
            ctx.emit({"n": n, "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "ok": 1.5}, None)
        self.stopped.wait()

    def close(self, ctx):
        self.stopped.set()

if __name__ == "__main__":
    start(PluginConfig("oddsrc", sources={"seq": Odd}, sinks={}, functions={}))
"""


def _strict(line: str) -> dict:
    def refuse(constant: str):
        raise ValueError(f"{constant} in {line[:200]}")

    return json.loads(line, parse_constant=refuse)


def test_codec_writes_null_for_non_finite_floats():
    assert encode_sink({"a": math.nan, "b": [math.inf, -math.inf, 2.5]}) == b'{"a":null,"b":[null,null,2.5]}'
    assert b"NaN" not in encode_sink_batch([{"a": math.nan}, {"a": 1.0}])
    [item] = decode_source_items(b'{"message": {"v": NaN, "w": -Infinity, "x": 1e999}, "meta": null}')
    assert item.message == {"v": None, "w": None, "x": None}


def test_nan_from_a_source_is_null_in_the_log_and_the_sink(processes, tmp_path: Path, ipc_dir: Path):
    plugins, data, out = tmp_path / "plugins", tmp_path / "data", tmp_path / "out.jsonl"
    folder = plugins / "oddsrc"
    folder.mkdir(parents=True)
    (folder / "oddsrc.py").write_text(NAN_SOURCE)
    (folder / "oddsrc.json").write_text(
        json.dumps({"version": "v1", "language": "python", "executable": "oddsrc.py", "sources": ["seq"]})
    )
    install_collector(plugins)
    stream(data, "demo")
    # n * 1e308 * 10 overflows to Infinity inside the rule: also null on the way out
    rule(data, "r1", "SELECT n, nan, inf, ninf, ok, n * 1e308 * 10 AS big FROM demo", out, extra_actions=[{"log": {}}])
    before = [snapshot(plugins), snapshot(data / "rules")]
    loader = start_loader(processes, plugins, ipc_dir, data)
    rows = wait_collected(out, 10)
    assert rows[0] == {"n": 1, "nan": None, "inf": None, "ninf": None, "ok": 1.5, "big": None}
    assert "NaN" not in out.read_text() and "Infinity" not in out.read_text()
    logged = loader.wait_for("sink.log", rule="r1", count=10)
    [row] = logged["message"]
    assert row["nan"] is None and row["big"] is None
    assert loader.terminate() == 0
    assert [snapshot(plugins), snapshot(data / "rules")] == before
    for line in loader.raw:  # every line of the JSON log is strict JSON
        if line.startswith("{"):
            _strict(line)
