"""Demo portable plugin: a counter source, a print sink and a revert function.

Runs under the portable loader and, unchanged apart from the import, under
eKuiper.  Try it without a host:

    python -m sdk.debug plugins/portable/demo/demo.py source counter --conf '{"interval": 100}' --count 5
    echo '[{"a": 1}]' | python -m sdk.debug plugins/portable/demo/demo.py sink print
    python -m sdk.debug plugins/portable/demo/demo.py function revert --args '["hello"]'
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from sdk import Context, Function, PluginConfig, Sink, Source, start


class Counter(Source):
    """Emits {"n": 1, "name": ...}, {"n": 2, ...} every `interval` ms."""

    def __init__(self) -> None:
        self.interval_s = 1.0
        self.name = "counter"
        self.stopped = threading.Event()

    def configure(self, datasource: str, conf: dict) -> None:
        interval = conf.get("interval", 1000)
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
            raise ValueError(f"interval must be a positive number of milliseconds, got {interval!r}")
        self.interval_s = interval / 1000
        self.name = str(conf.get("name") or datasource or "counter")

    def open(self, ctx: Context) -> None:
        ctx.get_logger().info("counter started", extra={"interval_ms": self.interval_s * 1000})
        n = 0
        while not self.stopped.is_set():
            n += 1
            ctx.emit({"n": n, "name": self.name}, None)
            self.stopped.wait(self.interval_s)

    def close(self, ctx: Context) -> None:
        self.stopped.set()


class Print(Sink):
    """Prints every message it receives to stdout, as it came, and acknowledges it.

    A message is a JSON array of rows (one result of the rule) or, with the
    action's ``sendSingle: true``, one row (an object): both print as they are.
    """

    def configure(self, conf: dict) -> None:
        self.prefix = str(conf.get("prefix", ""))

    def collect(self, ctx: Context, data: bytes) -> None:
        print(f"{self.prefix}{data.decode(errors='replace')}", file=sys.stdout, flush=True)
        ctx.ack_ok()


class Revert(Function):
    """revert(s) returns the string s reversed."""

    def validate(self, args: list[Any]) -> str:
        if len(args) != 1:
            return f"revert takes exactly 1 argument, got {len(args)}"
        return ""

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return str(args[0])[::-1]

    def is_aggregate(self) -> bool:
        return False


if __name__ == "__main__":
    start(PluginConfig("demo", sources={"counter": Counter}, sinks={"print": Print}, functions={"revert": Revert}))
