"""Symbols a rule starts while a new plugin process is still being given its symbols are not lost.

A rule that starts while the plugin handshakes and replays its symbols
registers them with the supervisor, which does not send them itself (the
process is not running yet); the replay must then send them too, or the rule
stays "started" with a source and sink the plugin never heard of.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from loader.config import LoaderConfig
from loader.plugins.manifest import load_plugin
from loader.plugins.status import StatusBoard
from loader.plugins.supervisor import PluginSupervisor
from tests.support.loader_process import make_plugin


class MidReplayRule:
    """A control channel stand-in: while the first symbol starts, a rule adds two more."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.supervisor: PluginSupervisor | None = None

    async def command(self, name: str, control: dict, timeout: float) -> None:
        self.sent.append((name, control["symbolName"]))
        if len(self.sent) == 1:
            assert self.supervisor is not None and not self.supervisor.running
            await self.supervisor.start_symbol("rule/src", {"symbolName": "counter"})
            await self.supervisor.start_symbol("rule/sink", {"symbolName": "print"})
        await asyncio.sleep(0)


def test_symbols_started_during_the_replay_are_replayed_too(tmp_path: Path) -> None:
    make_plugin(tmp_path / "plugins", "car")
    config = LoaderConfig(plugins_dir=tmp_path / "plugins", ipc_dir=tmp_path)
    supervisor = PluginSupervisor(load_plugin(tmp_path / "plugins/car"), config, StatusBoard())
    channel = MidReplayRule()
    channel.supervisor = supervisor
    supervisor.channel = channel  # type: ignore[assignment]
    supervisor._symbols["rule/func"] = {"symbolName": "revert"}

    assert asyncio.run(supervisor._replay_symbols()) is None  # no failure
    assert channel.sent == [("start", "revert"), ("start", "counter"), ("start", "print")]
