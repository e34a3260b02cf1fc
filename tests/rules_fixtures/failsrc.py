"""Test plugin: source ``fails`` raises in ``open`` while the file named by $RULE_HEALTH_FLAG exists,
else emits {"n": 1, 2, ...} every 20 ms until stopped."""

import os
import threading

from sdk import Context, PluginConfig, Source, start


class Fails(Source):
    def configure(self, datasource: str, conf: dict) -> None:
        self.stopped = threading.Event()

    def open(self, ctx: Context) -> None:
        if os.path.exists(os.environ.get("RULE_HEALTH_FLAG", "")):
            raise RuntimeError("cannot reach the device")
        n = 0
        while not self.stopped.wait(0.02):
            n += 1
            ctx.emit({"n": n}, None)

    def close(self, ctx: Context) -> None:
        self.stopped.set()


if __name__ == "__main__":
    start(PluginConfig("failsrc", sources={"fails": Fails}, sinks={}, functions={}))
