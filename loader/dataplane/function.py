"""Portable function symbols, shared by every rule that calls them.

A function symbol has one channel (``func_<symbol>.ipc``) and one ``start``
command for all rules (PROTOCOL.md section 5), so handles are reference
counted: the first rule opens and starts it, the last one stops it.
``IsAggregate`` is asked once per plugin version and cached.

A call in flight while the plugin process is replaced is not lost: the new
process handshakes on the same channel and the channel sends the call again.

Each call site of a rule gets a ``CallSite``: called with one argument list
it makes one ``Exec``; its ``many`` runs a batch of rows, one ``ExecBatch``
per ``batch.max_records`` rows when the plugin declared batches (see
``FunctionChannel.exec_batch``).

Every call, an ``Exec`` or a whole ``ExecBatch``, has the same time limit
(``limits.function_timeout_s``): a function is judged by whether it
answers, not given more time for more rows.  A call that times out degrades
the rule (loader/dataplane/parts.py) and marks the plugin unhealthy, so its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from loader.config import BatchSettings
from loader.dataplane import RunningPlugin, open_and_start
from loader.dataplane.parts import Part, RuleParts
from loader.wire.function import FunctionChannel, FunctionError, FunctionTimeout
from sdk.protocol.control import TYPE_FUNC, Control
from sdk.protocol.messages import exec_meta

#: Default timeout of one call, an Exec or a whole ExecBatch (limits.function_timeout_s).
CALL_TIMEOUT_S = 10.0


class CallSite:
    """One call site of one rule: ``site(args)`` runs one row, ``site.many(rows)`` a batch."""

    __slots__ = ("channel", "meta", "enabled", "max_rows", "timeout", "health")

    def __init__(
        self,
        channel: FunctionChannel,
        meta: str,
        batch: BatchSettings,
        timeout: float = CALL_TIMEOUT_S,
        health: Part | None = None,
    ) -> None:
        self.channel = channel
        self.meta = meta
        self.enabled = batch.enabled
        self.max_rows = max(1, batch.max_records)
        self.timeout = timeout
        self.health = health

    def __call__(self, args: list[Any]) -> Any:
        try:
            result = self.channel.exec(args, self.meta, timeout=self.timeout)
        except FunctionTimeout as exc:
            self._timed_out(exc)
            raise
        if self.health is not None:
            self.health.working()
        return result

    def _timed_out(self, exc: FunctionTimeout) -> None:
        if self.health is not None:
            self.health.failed(f"{exc} (limits.function_timeout_s)")

    @property
    def batching(self) -> bool:
        """Worth evaluating rows in batches: enabled and the plugin's process declared batches."""
        return self.enabled and self.channel.batch_capable

    def many(self, rows: list[list[Any]]) -> list[Any]:
        """One result per row, in order; a failed row's result is its FunctionError."""
        results: list[Any] = []
        step = self.max_rows if self.enabled else 1
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            try:
                if len(chunk) > 1:
                    results.extend(self.channel.exec_batch(chunk, self.meta, timeout=self.timeout))
                    continue
                results.append(self.channel.exec(chunk[0], self.meta, timeout=self.timeout))
            except FunctionTimeout as exc:
                self._timed_out(exc)
                raise
            except FunctionError as exc:
                if len(chunk) > 1:
                    raise
                results.append(exc)
        if self.health is not None:
            self.health.working()
        return results


class FunctionHandle:
    def __init__(
        self,
        supervisor: RunningPlugin,
        symbol: str,
        config: dict[str, Any],
        ipc_dir: Path,
        batch: BatchSettings | None = None,
        timeout: float = CALL_TIMEOUT_S,
    ) -> None:
        self.supervisor = supervisor
        self.timeout = timeout
        self.batch = batch or BatchSettings()
        self.symbol = symbol
        self.control = Control(symbol, TYPE_FUNC, "", "", 0, config=config)
        self.key = self.control.key
        self.channel = FunctionChannel.for_symbol(ipc_dir, supervisor.name, symbol, timeout=timeout)
        self.users = 0
        self._aggregate: tuple[str, bool] | None = None

    async def start(self) -> None:
        await open_and_start(self.channel, self.supervisor, self.control)

    async def stop(self) -> None:
        try:
            await self.supervisor.stop_symbol(self.key)
        finally:
            self.channel.close()

    async def validate(self, args: list[Any]) -> None:
        await asyncio.to_thread(self.channel.validate, args)

    async def is_aggregate(self) -> bool:
        digest = self.supervisor.spec.digest
        if self._aggregate is None or self._aggregate[0] != digest:
            self._aggregate = (digest, await asyncio.to_thread(self.channel.is_aggregate))
        return self._aggregate[1]

    def caller(self, rule_id: str, func_id: int, parts: RuleParts | None = None) -> CallSite:
        """A callable for one call site of one rule: evaluated arguments in, result out (``many`` for a batch).

        A call that times out is reported to ``parts`` (the rule is degraded) and marks the plugin unhealthy.
        """
        part = parts.part("function", self.symbol, self.supervisor.name, self._plugin_unhealthy) if parts else None
        return CallSite(self.channel, exec_meta(rule_id, "project", 0, func_id), self.batch, self.timeout, part)

    def _plugin_unhealthy(self, cause: str) -> None:
        self.supervisor.mark_unhealthy(f"function {self.symbol}: {cause}")


class FunctionPool:
    """Function handles by symbol, started on first use and stopped after the last."""

    def __init__(self, ipc_dir: Path, batch: BatchSettings | None = None, timeout: float = CALL_TIMEOUT_S) -> None:
        self.ipc_dir = ipc_dir
        self.batch = batch or BatchSettings()
        self.timeout = timeout
        self._handles: dict[str, FunctionHandle] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, supervisor: RunningPlugin, symbol: str, config: dict[str, Any]) -> FunctionHandle:
        async with self._lock:
            handle = self._handles.get(symbol)
            if handle is None or handle.supervisor is not supervisor:
                handle = FunctionHandle(supervisor, symbol, config, self.ipc_dir, self.batch, self.timeout)
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
