"""Test plugin for the batching extension (tests/test_batching.py, tests/test_sdk_batching.py).

- source ``stamp``: emits ``{"n": 1..count, "t": <monotonic time of the emit>}``
  every ``interval_ms`` (0: as fast as it can), then, if ``error`` is set,
  reports that error; then idles until stopped.  CLOCK_MONOTONIC is shared by
  the processes of a machine, so a receiver can tell how long a record took.
- sink ``probe``: appends ``<record JSON>\\t<monotonic arrival time>`` per
  record to the file named by ``path``; acks an error for records whose JSON
  contains ``nack``, raises for those containing ``raise``.
- function ``double``: returns twice its argument; raises for a negative
  one, returns a non-JSON value for 13.

Observation points the sdk hides from plugin code, written to files in the
directory named by ``observe.json`` in the plugin's folder (never into the
folder itself: a plugin that writes there changes its own content, and the
loader swaps it for the "new version"): ``batches.txt`` gets the size of
every sink batch message, ``execbatch.txt`` the row count of every
``ExecBatch`` call.  They wrap sdk internals, which is fine for a fixture.
"""

import json
import os
import threading
import time
from typing import Any

import sdk.runtimes
from sdk import Context, Function, PluginConfig, Sink, Source, start

_split = sdk.runtimes.split_sink_batch
_exec_batch = sdk.runtimes.FunctionRuntime._exec_batch


if os.path.exists("observe.json"):  # under a loader: never its own (watched) folder
    with open("observe.json") as _f:
        _OBSERVED = json.load(_f)["dir"]
else:  # run by a bare host from a scratch copy (tests/test_sdk_batching.py)
    _OBSERVED = "."


def _note(filename: str, count: int) -> None:
    with open(os.path.join(_OBSERVED, filename), "a") as f:
        f.write(f"{count}\n")


def _split_noted(data: bytes):
    records = _split(data)
    if records is not None:
        _note("batches.txt", len(records))
    return records


def _exec_batch_noted(self, rows, ctx):
    _note("execbatch.txt", len(rows))
    return _exec_batch(self, rows, ctx)


sdk.runtimes.split_sink_batch = _split_noted
sdk.runtimes.FunctionRuntime._exec_batch = _exec_batch_noted


class Stamp(Source):
    def configure(self, datasource: str, conf: dict) -> None:
        self.count = int(conf.get("count", 10))
        self.interval_s = float(conf.get("interval_ms", 0)) / 1000
        self.error = conf.get("error")
        self.stopped = threading.Event()

    def open(self, ctx: Context) -> None:
        for n in range(1, self.count + 1):
            if self.stopped.is_set():
                return
            ctx.emit({"n": n, "t": time.monotonic()}, {"seq": n})
            if self.interval_s:
                self.stopped.wait(self.interval_s)
        if self.error:
            ctx.emit_error(self.error)
        self.stopped.wait()

    def close(self, ctx: Context) -> None:
        self.stopped.set()


class Probe(Sink):
    def configure(self, conf: dict) -> None:
        self.path = conf["path"]
        self.delay_s = float(conf.get("delay_ms", 0)) / 1000

    def open(self, ctx: Context) -> None:
        self.file = open(self.path, "a", buffering=1)

    def collect(self, ctx: Context, data: bytes) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if b"raise" in data:
            raise ValueError("probe refuses " + data.decode())
        if b"nack" in data:
            ctx.ack_error("probe nacks " + data.decode())
            return
        self.file.write(f"{data.decode()}\t{time.monotonic():.6f}\n")
        self.file.flush()

    def close(self, ctx: Context) -> None:
        self.file.close()


class Double(Function):
    def exec(self, args: list[Any], ctx: Context) -> Any:
        value = args[0]
        if value is not None and value < 0:
            raise ValueError(f"negative: {value}")
        if value == 13:
            return object()
        return None if value is None else value * 2


if __name__ == "__main__":
    start(PluginConfig("batchfix", sources={"stamp": Stamp}, sinks={"probe": Probe}, functions={"double": Double}))
