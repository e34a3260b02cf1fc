"""A sink that cannot reach its destination: ``open`` always raises.

The sdk then error-acks every record, so a rule sending to it with
``requireAck`` is degraded ("sink open failed"), which is what the recipe
"Which rule is stuck, and why?" of docs/operations.md looks for.
"""

from __future__ import annotations

from sdk import Context, PluginConfig, Sink, start


class Gate(Sink):
    def configure(self, conf: dict) -> None:
        pass

    def open(self, ctx: Context) -> None:
        raise ConnectionError("gate: the broker refused the connection")

    def collect(self, ctx: Context, data: bytes) -> None:
        ctx.ack_ok()

    def close(self, ctx: Context) -> None:
        pass


if __name__ == "__main__":
    start(PluginConfig("gate", sinks={"gate": Gate}))
