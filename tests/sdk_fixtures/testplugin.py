"""Plugin program driven by the sdk tests.  Symbols behave as their config says.

Environment: SDK_FIXTURE_NAME overrides the PluginConfig name, and
SDK_FIXTURE_FUNC registers the ``concat`` function under a second name (the
eKuiper-compat test needs names unique in /tmp).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from sdk import Context, Function, PluginConfig, Sink, Source, start


def _mark(conf: dict, text: str) -> None:
    path = conf.get("marker")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


class Seq(Source):
    """Emits ``count`` records {"i": k} with meta {"k": k}, then returns."""

    def configure(self, datasource: str, conf: dict) -> None:
        self.conf = conf
        self.datasource = datasource

    def open(self, ctx: Context) -> None:
        for k in range(self.conf.get("count", 10)):
            ctx.emit({"i": k, "ds": self.datasource}, {"k": k})

    def close(self, ctx: Context) -> None:
        _mark(self.conf, "seq closed")


class Forever(Source):
    """Emits every ``interval_ms`` until closed; close() writes the marker."""

    def configure(self, datasource: str, conf: dict) -> None:
        self.conf = conf
        self.stopped = threading.Event()

    def open(self, ctx: Context) -> None:
        n = 0
        while not self.stopped.wait(self.conf.get("interval_ms", 20) / 1000):
            ctx.emit({"n": n}, None)
            n += 1

    def close(self, ctx: Context) -> None:
        self.stopped.set()
        _mark(self.conf, "forever closed")


class Boom(Source):
    def open(self, ctx: Context) -> None:
        raise RuntimeError("source exploded")


class BadConf(Source):
    def configure(self, datasource: str, conf: dict) -> None:
        raise ValueError("interval must be positive")

    def open(self, ctx: Context) -> None:
        pass


class Logs(Source):
    """Logs through ctx.get_logger() and reports what kind of object it got."""

    def open(self, ctx: Context) -> None:
        logger = ctx.get_logger()
        logger.info("hello from the plugin")
        ctx.emit({"is_logger": isinstance(logger, logging.Logger)}, None)


class Collect(Sink):
    """Appends each message to ``out``; acks according to ``mode``."""

    def configure(self, conf: dict) -> None:
        self.conf = conf
        self.mode = conf.get("mode", "manual")

    def collect(self, ctx: Context, data: bytes) -> None:
        assert isinstance(data, bytes)
        with open(self.conf["out"], "ab") as f:
            f.write(data + b"\n")
        if self.mode == "manual":
            ctx.ack_ok()
        elif self.mode == "double":
            ctx.ack_ok()
            ctx.ack_error("second ack must be dropped")
        elif self.mode == "fail" and b"fail" in data:
            raise ValueError("cannot deliver " + data.decode())

    def close(self, ctx: Context) -> None:
        _mark(self.conf, "collect closed")


class Concat(Function):
    def validate(self, args: list[Any]) -> str:
        return "" if args else "concat needs at least one argument"

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return {"joined": "".join(str(a) for a in args), "rule": ctx.get_rule_id(), "op": ctx.get_op_id()}

    def is_aggregate(self) -> bool:
        return False


class Divide(Function):
    def exec(self, args: list[Any], ctx: Context) -> Any:
        return args[0] / args[1]

    def is_aggregate(self) -> bool:
        return True


functions = {"concat": Concat, "divide": Divide}
if os.environ.get("SDK_FIXTURE_FUNC"):
    functions[os.environ["SDK_FIXTURE_FUNC"]] = Concat

if __name__ == "__main__":
    start(
        PluginConfig(
            os.environ.get("SDK_FIXTURE_NAME", "sdkfixture"),
            sources={"seq": Seq, "forever": Forever, "boom": Boom, "badconf": BadConf, "logs": Logs},
            sinks={"collect": Collect},
            functions=functions,
        )
    )
