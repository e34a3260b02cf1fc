"""Where a rule's results go: portable sink instances and the built-in sinks.

Every sink has the same small surface: ``await start()``, ``deliver(record)``
called on the rule's data-plane thread, ``await stop()``, and ``metrics``.

A portable sink with ``requireAck`` delivers at least once: a record counts as
delivered only when its ack arrived; when the plugin process is replaced
while a record waits for its ack, or no process takes it in time, the same
record is sent again to the next process.  A record the new process had
already handled before its ack was lost can therefore arrive twice, never
zero times.  Without ``requireAck`` a record still in the old process's
buffers when it dies is lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loader.log import get_logger
from loader.runtime.metrics import NodeMetrics
from loader.supervisor import PluginSupervisor
from loader.wire.codec import DataChannelClosed, encode_sink
from loader.wire.sink import SinkAckError, SinkChannel, SinkTimeout

BUILTIN_SINKS = ("log", "nop")


class PortableSink:
    def __init__(self, supervisor: PluginSupervisor, symbol: str, rule_id: str, index: int,
                 config: dict[str, Any], ipc_dir: Path) -> None:
        self.supervisor = supervisor
        self.symbol = symbol
        self.op_id = f"sink-{symbol}-{index}"
        self.key = f"{rule_id}_{self.op_id}_0_{symbol}"
        self.metrics = NodeMetrics(f"sink_{symbol}_{index}_0")
        self.require_ack = bool(config.get("requireAck", False))
        self.control = {
            "symbolName": symbol,
            "meta": {"ruleId": rule_id, "opId": self.op_id, "instanceId": 0},
            "pluginType": "sink",
            "config": config,
        }
        self.channel = SinkChannel.for_instance(ipc_dir, supervisor.name, symbol, rule_id, self.op_id, 0,
                                                require_ack=self.require_ack)
        self._stopping = False
        self._retrying = False
        self.log = get_logger(plugin=supervisor.name, symbol=symbol, rule=rule_id)

    async def start(self) -> None:
        self.channel.open()
        try:
            await self.supervisor.start_symbol(self.key, self.control)
        except Exception:
            self.channel.close()
            raise
        self.channel.connect()

    async def stop(self) -> None:
        self._stopping = True
        self.channel.close()
        try:
            await self.supervisor.stop_symbol(self.key)
        except Exception as exc:
            self.log.warning("sink.stop_failed", error=str(exc))

    def deliver(self, record: Any) -> None:
        self.metrics.records_in += 1
        payload = encode_sink(record)
        supervisor = self.supervisor
        while not self._stopping:
            generation = supervisor.generation
            try:
                self.channel.send_raw(payload, abandon=lambda: supervisor.generation != generation)
            except SinkTimeout as exc:
                self._note_retry(str(exc))
                continue
            except SinkAckError as exc:
                self.metrics.error(exc.error)
                return
            except DataChannelClosed:
                return
            self.metrics.records_out += 1
            if self._retrying:
                self._retrying = False
                self.log.info("sink.resumed", pid=supervisor.process.pid if supervisor.process else None)
            return

    def _note_retry(self, error: str) -> None:
        if not self._retrying:
            self._retrying = True
            self.log.warning("sink.retrying", error=error, reason="sending the same record again")


class LogSink:
    """Built-in ``log``: each result becomes a ``sink.log`` event on the loader's log."""

    def __init__(self, rule_id: str, index: int) -> None:
        self.metrics = NodeMetrics(f"sink_log_{index}_0")
        self.log = get_logger(rule=rule_id, symbol="log")

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def deliver(self, record: Any) -> None:
        self.metrics.records_in += 1
        self.log.info("sink.log", record=record)
        self.metrics.records_out += 1


class NopSink:
    """Built-in ``nop``: counts results and drops them (for tests and benchmarks)."""

    def __init__(self, rule_id: str, index: int) -> None:
        self.metrics = NodeMetrics(f"sink_nop_{index}_0")

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def deliver(self, record: Any) -> None:
        self.metrics.records_in += 1
        self.metrics.records_out += 1
