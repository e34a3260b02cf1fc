"""Portable function symbols, shared by every rule that calls them.

A function symbol has one channel (``func_<symbol>.ipc``) and one ``start``
command for all rules (PROTOCOL.md section 5), so handles are reference
counted: the first rule opens and starts it, the last one stops it.
``IsAggregate`` is asked once per plugin version and cached.

A call in flight while the plugin process is replaced is not lost: the new
process handshakes on the same channel and the channel sends the call again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from loader.supervisor import PluginSupervisor
from loader.wire.codec import exec_meta
from loader.wire.function import FunctionChannel

CALL_TIMEOUT_S = 10.0


class FunctionHandle:
    def __init__(self, supervisor: PluginSupervisor, symbol: str, config: dict[str, Any], ipc_dir: Path) -> None:
        self.supervisor = supervisor
        self.symbol = symbol
        self.key = f"func_{symbol}"
        self.control = {
            "symbolName": symbol,
            "meta": {"ruleId": "", "opId": "", "instanceId": 0},
            "pluginType": "func",
            "config": config,
        }
        self.channel = FunctionChannel.for_symbol(ipc_dir, supervisor.name, symbol, timeout=CALL_TIMEOUT_S)
        self.users = 0
        self._aggregate: tuple[str, bool] | None = None

    async def start(self) -> None:
        self.channel.open()
        try:
            await self.supervisor.start_symbol(self.key, self.control)
        except Exception:
            self.channel.close()
            raise

    async def stop(self) -> None:
        try:
            await self.supervisor.stop_symbol(self.key)
        finally:
            self.channel.close()

    async def validate(self, args: list) -> None:
        await asyncio.to_thread(self.channel.validate, args)

    async def is_aggregate(self) -> bool:
        digest = self.supervisor.spec.digest
        if self._aggregate is None or self._aggregate[0] != digest:
            self._aggregate = (digest, await asyncio.to_thread(self.channel.is_aggregate))
        return self._aggregate[1]

    def caller(self, rule_id: str, func_id: int) -> Callable[[list], Any]:
        """A callable for one call site of one rule: evaluated arguments in, result out."""
        meta = exec_meta(rule_id, "project", 0, func_id)
        execute = self.channel.exec
        return lambda args: execute(args, meta)


class FunctionPool:
    """Function handles by symbol, started on first use and stopped after the last."""

    def __init__(self, ipc_dir: Path) -> None:
        self.ipc_dir = ipc_dir
        self._handles: dict[str, FunctionHandle] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, supervisor: PluginSupervisor, symbol: str, config: dict[str, Any]) -> FunctionHandle:
        async with self._lock:
            handle = self._handles.get(symbol)
            if handle is None or handle.supervisor is not supervisor:
                handle = FunctionHandle(supervisor, symbol, config, self.ipc_dir)
                await handle.start()
                self._handles[symbol] = handle
            handle.users += 1
            return handle

    async def release(self, handle: FunctionHandle) -> None:
        async with self._lock:
            handle.users -= 1
            if handle.users <= 0 and self._handles.get(handle.symbol) is handle:
                del self._handles[handle.symbol]
                await handle.stop()
