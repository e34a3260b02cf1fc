"""Test plugin: sink ``collect`` appends every message to the file named by
its ``path`` config (flushed before the ack, after ``delay_ms``), as it came (an array of
rows, or a row with ``sendSingle``); with ``config_out`` it also writes the configuration it
got there; function ``revert`` reverses a string, function ``fail`` always raises."""

import json
import time
from typing import Any

from sdk import Context, Function, PluginConfig, Sink, start


class Collect(Sink):
    def configure(self, conf: dict) -> None:
        self.path = conf["path"]
        self.delay_s = float(conf.get("delay_ms", 0)) / 1000
        if conf.get("config_out"):
            with open(conf["config_out"], "w") as f:
                json.dump(conf, f)

    def open(self, ctx: Context) -> None:
        self.file = open(self.path, "a", buffering=1)

    def collect(self, ctx: Context, data: bytes) -> None:
        if self.delay_s:  # a slow sink: a record is almost always in flight
            time.sleep(self.delay_s)
        self.file.write(data.decode() + "\n")
        self.file.flush()
        ctx.ack_ok()

    def close(self, ctx: Context) -> None:
        self.file.close()


class Revert(Function):
    def validate(self, args: list[Any]) -> str:
        return "" if len(args) == 1 else f"revert takes 1 argument, got {len(args)}"

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return str(args[0])[::-1]

    def is_aggregate(self) -> bool:
        return False


if __name__ == "__main__":
    start(PluginConfig("collector", sources={}, sinks={"collect": Collect}, functions={"revert": Revert}))
