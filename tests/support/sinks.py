"""A sink plugin's channel that counts what it sends, and a real supervisor for one plugin folder,
for the ack-window and eKuiper-SDK sink tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from loader.config import LoaderConfig
from loader.dataplane.sink import PortableSink
from loader.plugins.manifest import load_plugin
from loader.plugins.status import StatusBoard
from loader.plugins.supervisor import PluginSupervisor
from loader.wire.control import ControlChannel
from loader.wire.sink import SinkChannel

TIMEOUT = 10.0


class CountingChannel(SinkChannel):
    """The real sink channel, counting the messages sent whose ack has not been taken yet."""

    in_flight = 0
    most_in_flight = 0

    def send_message(self, payload: bytes, abandon: Callable[[], bool] | None = None) -> None:
        super().send_message(payload, abandon)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def recv_ack(self, abandon: Callable[[], bool] | None = None, block: bool = True) -> bytes | None:
        reply = super().recv_ack(abandon, block)
        if reply is not None:
            self.in_flight -= 1
        return reply


async def run_sink(
    control: ControlChannel, supervisor: PluginSupervisor, symbol: str, config: dict, ipc: Path, count: int
) -> CountingChannel:
    """Start ``symbol`` as a rule's sink, deliver ``count`` one-row results (50 per call, as a busy rule
    hands them over), settle, stop it; the channel tells how many messages were in flight at most."""
    supervisor.channel = control  # what the process declared in its handshake decides the window
    sink = PortableSink(supervisor, symbol, "rwin", 0, {**config, "requireAck": True}, ipc)
    channel = CountingChannel.for_instance(
        ipc, supervisor.name, symbol, "rwin", sink.op_id, 0, require_ack=True, ack_timeout=TIMEOUT
    )
    sink.channel = channel

    def deliver() -> None:
        for first in range(0, count, 50):
            sink.deliver_many([[{"n": n}] for n in range(first, min(first + 50, count))])
        sink.settle()

    channel.open()
    try:
        await control.command("start", sink.control.to_dict(), TIMEOUT)
        channel.connect()
        await asyncio.to_thread(deliver)
        await control.command("stop", sink.control.to_dict(), TIMEOUT)
    finally:
        channel.close()
    assert sink.metrics.records_in == sink.metrics.records_out == count
    return channel


def supervisor_for(folder: Path, ipc: Path) -> PluginSupervisor:
    """The loader's supervisor of the plugin in ``folder`` (default settings: ``sinks.ack_window`` 32)."""
    return PluginSupervisor(load_plugin(folder), LoaderConfig(plugins_dir=folder.parent, ipc_dir=ipc), StatusBoard())
