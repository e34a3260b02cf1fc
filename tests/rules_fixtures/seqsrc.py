"""Test plugin: source ``seq`` emits {"n": 1..count, "name": "x<n>"}, then idles.

Config: ``count`` (default 100), ``interval_ms`` (0 = as fast as it can),
``empty_every`` (0 = never): every that many records, emit ``{}`` instead.
"""

import threading

from sdk import Context, PluginConfig, Source, start


class Seq(Source):
    def configure(self, datasource: str, conf: dict) -> None:
        self.count = int(conf.get("count", 100))
        self.interval_s = float(conf.get("interval_ms", 0)) / 1000
        self.empty_every = int(conf.get("empty_every", 0))
        self.stopped = threading.Event()

    def open(self, ctx: Context) -> None:
        for n in range(1, self.count + 1):
            if self.stopped.is_set():
                return
            if self.empty_every and n % self.empty_every == 0:
                ctx.emit({}, None)
            else:
                ctx.emit({"n": n, "name": f"x{n}", "nested": {"v": n * 10}}, None)
            if self.interval_s:
                self.stopped.wait(self.interval_s)

    def close(self, ctx: Context) -> None:
        self.stopped.set()


if __name__ == "__main__":
    start(PluginConfig("seqsrc", sources={"seq": Seq}, sinks={}, functions={}))
