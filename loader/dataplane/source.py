"""A running source symbol instance, feeding one rule or, when shared, several.

The host's PULL socket listens before the start command goes out and stays
open across plugin restarts; the supervisor replays the start command on every
new process.  One thread per instance receives records, a batch at a time
(whatever has queued up), and offers each batch to every subscribing rule's
buffer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loader.dataplane import RunningPlugin, open_and_start
from loader.dataplane.metrics import now_ms
from loader.log import get_logger
from loader.wire.codec import DataChannelClosed
from loader.wire.source import SourceChannel, SourceTimeout
from sdk.protocol.control import TYPE_SOURCE, Control

#: Called with a batch of records and the bytes they took on the wire.
Consumer = Callable[[list[Any], int], None]
ErrorConsumer = Callable[[str], None]

RECV_POLL_S = 0.5
RECV_BATCH = 256
#: Bytes one receive gathers at most: a batch of big records stops early (rule buffers count bytes).
RECV_BATCH_BYTES = 1 << 20


class SourceInstance:
    def __init__(
        self,
        supervisor: RunningPlugin,
        symbol: str,
        rule_id: str,
        op_id: str,
        datasource: str,
        config: dict[str, Any],
        ipc_dir: Path,
    ) -> None:
        self.supervisor = supervisor
        self.symbol = symbol
        self.rule_id = rule_id
        self.op_id = op_id
        self.control = Control(symbol, TYPE_SOURCE, rule_id, op_id, 0, datasource, config)
        self.key = self.control.key
        self.channel = SourceChannel.for_instance(ipc_dir, supervisor.name, symbol, rule_id, op_id, 0)
        self._consumers: dict[str, tuple[Consumer, ErrorConsumer]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.log = get_logger(plugin=supervisor.name, symbol=symbol, rule=rule_id)
        # Health facts (loader/rules/health.py), written by the receiving thread only.
        self.last_record_ms = 0
        self.last_error_ms = 0
        self.last_error = ""
        self.error_generation = 0

    def subscribe(self, name: str, on_record: Consumer, on_error: ErrorConsumer) -> None:
        # Copy-on-write: the receiving thread iterates a snapshot without locking.
        self._consumers = {**self._consumers, name: (on_record, on_error)}

    def unsubscribe(self, name: str) -> bool:
        """Remove a subscriber; True when none is left."""
        self._consumers = {k: v for k, v in self._consumers.items() if k != name}
        return not self._consumers

    async def start(self) -> None:
        await open_and_start(self.channel, self.supervisor, self.control)
        self._thread = threading.Thread(target=self._receive, name=f"source-{self.key}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping = True
        try:
            await self.supervisor.stop_symbol(self.key)
        except Exception as exc:  # the plugin may be gone already; the socket still must close
            self.log.warning("source.stop_failed", error=str(exc))
        self.channel.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def _receive(self) -> None:
        channel = self.channel
        while not self._stopping:
            received = channel.received_bytes
            try:
                items = channel.recv_batch(RECV_BATCH, RECV_POLL_S, RECV_BATCH_BYTES)
            except SourceTimeout:
                continue
            except DataChannelClosed:
                return
            except Exception as exc:  # never let the receiving thread die silently
                self.log.error("source.receive_failed", error=f"{type(exc).__name__}: {exc}")
                time.sleep(RECV_POLL_S)
                continue
            records: list[Any] = []
            consumers = self._consumers.values()
            for item in items:
                if item.error is not None:
                    self.last_error_ms, self.last_error = now_ms(), item.error
                    self.error_generation = self.supervisor.generation
                    for _, on_error in consumers:
                        on_error(item.error)
                elif item.meta:
                    records.extend(with_meta(item.message, item.meta))
                elif isinstance(item.message, list):
                    records.extend(item.message)
                else:
                    records.append(item.message)
            if records:
                size = channel.received_bytes - received
                self.last_record_ms = now_ms()
                for on_records, _ in consumers:
                    on_records(records, size)


class MetaRecord(dict[str, Any]):
    """A record with the metadata its source sent along (``meta``), for the SQL's ``meta(key)``.

    Still a plain JSON object to everything else; only records that came
    with metadata pay for the copy.
    """

    __slots__ = ("meta",)

    def __init__(self, message: dict[str, Any], meta: dict[str, Any]) -> None:
        super().__init__(message)
        self.meta = meta


def with_meta(message: Any, meta: dict[str, Any]) -> list[Any]:
    """The records of one source message, each carrying ``meta`` when it is an object."""
    messages = message if isinstance(message, list) else [message]
    return [MetaRecord(m, meta) if isinstance(m, dict) else m for m in messages]
