"""Test plugin: sink ``drop`` acks every record; its ``open`` raises while the file named by
$RULE_HEALTH_FLAG holds "open", and the whole process exits at once (exit code 3) while it holds "crash"."""

import os
import sys

from sdk import Context, PluginConfig, Sink, start


def flag() -> str:
    try:
        with open(os.environ.get("RULE_HEALTH_FLAG", "")) as f:
            return f.read().strip()
    except OSError:
        return ""


class Drop(Sink):
    def configure(self, conf: dict) -> None:
        pass

    def open(self, ctx: Context) -> None:
        if flag() == "open":
            raise ConnectionError("broker refused the connection")

    def collect(self, ctx: Context, data: bytes) -> None:
        ctx.ack_ok()

    def close(self, ctx: Context) -> None:
        pass


if __name__ == "__main__":
    if flag() == "crash":
        print("crashsink: crashing on purpose", flush=True)
        sys.exit(3)
    start(PluginConfig("crashsink", sources={}, sinks={"drop": Drop}, functions={}))
