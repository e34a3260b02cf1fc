"""Benchmark plugin written only against eKuiper's official Python SDK (``ekuiper``).

The plugins of the side-by-side comparison with eKuiper (bench/ekuiper_compare.py),
run unchanged by the loader.  Its symbols carry the plugin's name (its
folder's name) as a suffix, because eKuiper's SDK hard-codes ``/tmp`` and
names function sockets by symbol alone:

- source ``seq<name>``: emits ``{"x": 1}`` .. ``{"x": count}`` (``count``
  from its configuration, default 200,000) as fast as the SDK lets it, then
  idles until stopped;
- sink ``count<name>``: counts the records it receives (a message is one
  object, or a JSON array of them) and writes ``<count> <first> <last>``
  (monotonic times of the first and the last message) to
  ``<count_dir>/<rule>.count`` every 50 ms;
- function ``inc<name>``: returns its argument plus one.
"""

import json
import os
import threading
import time

from ekuiper import Context, Function, PluginConfig, Sink, Source, plugin

NAME = os.path.basename(os.getcwd())
with open("bench.json") as settings:
    COUNT_DIR = json.load(settings)["count_dir"]


class Seq(Source):
    def __init__(self):
        self.stopping = threading.Event()

    def configure(self, datasource, conf):
        self.count = int((conf or {}).get("count", 200000))

    def open(self, ctx: Context):
        for x in range(1, self.count + 1):
            if self.stopping.is_set():
                return
            ctx.emit({"x": x}, None)
        self.stopping.wait()

    def close(self, ctx: Context):
        self.stopping.set()


class Count(Sink):
    def __init__(self):
        self.count, self.first, self.last = 0, 0.0, 0.0
        self.stopping = threading.Event()

    def configure(self, conf):
        pass

    def open(self, ctx: Context):
        self.path = os.path.join(COUNT_DIR, f"{ctx.get_rule_id()}.count")
        threading.Thread(target=self._report, daemon=True).start()

    def collect(self, ctx: Context, data):
        now = time.monotonic()
        if not self.count:
            self.first = now
        self.count += len(json.loads(data)) if data[:1] == b"[" else 1
        self.last = now

    def _report(self):
        while True:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                f.write(f"{self.count} {self.first:.6f} {self.last:.6f}\n")
            os.replace(tmp, self.path)
            if self.stopping.wait(0.05):
                return

    def close(self, ctx: Context):
        self.stopping.set()


class Inc(Function):
    def validate(self, args):
        return ""

    def exec(self, args, ctx: Context):
        return args[0] + 1

    def is_aggregate(self):
        return False


if __name__ == "__main__":
    plugin.start(
        PluginConfig(
            NAME, {f"seq{NAME}": lambda: Seq()}, {f"count{NAME}": lambda: Count()}, {f"inc{NAME}": lambda: Inc()}
        )
    )
