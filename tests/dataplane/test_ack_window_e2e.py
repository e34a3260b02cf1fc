"""The sink ack window over real sockets, with real plugin processes.

- an sdk sink (it declares ``ackWindow``) is sent up to ``sinks.ack_window``
  messages before their acks, and receives every record once, in order;
- a rule through a real loader into an sdk sink with ``requireAck`` delivers
  every record once, in order, and counts them all once the source is done
  (the worker settles the window when it has nothing more to send);
- an eKuiper SDK sink, which declares nothing, still has exactly one message
  in flight: tests/compat/test_ekuiper_sdk_plugin.py runs it with ``run_sink`` below.

The host side of the first and last is the loader's own PortableSink and
PluginSupervisor in this process, with a channel that counts the messages
in flight; the plugin is the real program, started as the loader starts it.
"""

from __future__ import annotations

import asyncio
import sys

from loader.plugins.process import plugin_argument
from loader.wire.addresses import control_path
from loader.wire.control import ControlChannel
from tests.support.api import start_api
from tests.support.rules import collected, install_collector, install_seqsrc, seq_config, stream, write_json
from tests.support.sinks import TIMEOUT, CountingChannel, run_sink, supervisor_for
from tests.support.waiting import wait_until


def test_an_sdk_sink_gets_a_window_of_messages_and_every_record_once_in_order(processes, ipc_dir, tmp_path):
    folder = install_collector(tmp_path / "plugins")
    supervisor = supervisor_for(folder, ipc_dir)
    out = tmp_path / "out.jsonl"

    async def scenario() -> CountingChannel:
        control = ControlChannel(control_path(ipc_dir, "collector"), "collector")
        await control.open()
        try:
            argument = plugin_argument(supervisor.spec, ipc_dir, 5000, None)
            processes.popen([sys.executable, "-u", "collector.py", argument], cwd=folder)
            await control.wait_handshake(TIMEOUT)
            assert control.capabilities == {"ackWindow": 1024}
            # A slow sink (2 ms a record): without the window one message would be in flight at a time.
            config = {"path": str(out), "delay_ms": 2}
            channel = await run_sink(control, supervisor, "collect", config, ipc_dir, 400)
            assert supervisor.ack_window == 32
            return channel
        finally:
            await control.close()

    channel = asyncio.run(scenario())
    assert channel.most_in_flight == 32
    assert collected(out) == [{"n": n} for n in range(400)]


def test_a_rule_with_require_ack_through_the_loader_delivers_and_counts_every_record_once_in_order(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    total = 3000
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    out = env["out"] / "r.jsonl"
    write_json(
        env["data"] / "rules" / "r1.json",
        {"id": "r1", "sql": "SELECT n FROM demo", "actions": [{"collect": {"path": str(out), "requireAck": True}}]},
    )
    api = start_api(processes, env["plugins"], env["ipc"], env["data"], extra=f"etc_dir: {env['etc']}\n")
    capabilities = api.loader.wait_for("plugin.running", plugin="collector")["capabilities"]
    assert capabilities["ackWindow"] == 1024
    wait_until(lambda: len(collected(out)) >= total, timeout=30, what="every record")

    def counted() -> int:
        status = api.ok("GET", "/rules/r1/status")
        return int(status["sink_collect_0_0_records_out_total"])

    # The last results' acks are taken when the worker runs dry, not when more records come.
    wait_until(lambda: counted() == total, timeout=10, what="every record counted", detail=lambda: str(counted()))
    assert [row["n"] for row in collected(out)] == list(range(1, total + 1))
    assert api.ok("GET", "/rules/r1/status")["status"] == "running"
