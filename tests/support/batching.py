"""The batching tests' tools: a sink peer on a real socket, the host's portable sink over it,
the batchfix plugin and what its probes wrote."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynng

from loader.dataplane.sink import PortableSink
from sdk.protocol import messages
from tests.support.rules import (
    install,
)


class SinkPeer:
    """A sink plugin on raw pynng in a thread: records every message, acks per ``reply``."""

    def __init__(self, channel, reply=lambda message: b"{}") -> None:
        self.messages: list[bytes] = []
        self.data = pynng.Pull0(recv_timeout=200)
        self.data.listen(f"ipc://{channel.data_path}")
        self.acks = pynng.Push0(send_timeout=2000)
        self.acks.dial(f"ipc://{channel.ack_path}", block=True)
        self.reply = reply
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                message = self.data.recv()
            except pynng.Timeout:
                continue
            except pynng.Closed:
                return
            self.messages.append(message)
            answer = self.reply(message)
            if answer is not None:
                self.acks.send(answer)

    def records(self) -> list[Any]:
        """Every message the sink got, decoded: the lines of a batch one by one."""
        out: list[Any] = []
        for message in self.messages:
            lines = messages.split_sink_batch(message)
            out.extend(json.loads(line) for line in lines) if lines is not None else out.append(json.loads(message))
        return out

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.data.close()
        self.acks.close()


def portable_sink(ipc_dir: Path, max_records: int, require_ack: bool = True) -> PortableSink:
    supervisor = SimpleNamespace(
        name="rawsink", generation=1, batch_max_records=max_records, ack_window=1, process=None
    )
    sink = PortableSink(supervisor, "recorder", "r1", 0, {"requireAck": require_ack}, ipc_dir)
    sink.channel.open()
    return sink


def install_batchfix(plugins: Path, **kw) -> Path:
    """The batchfix plugin; returns the directory of its observation files (see its docstring)."""
    folder = install(plugins, "batchfix", sources=["stamp"], sinks=["probe"], functions=["double"], **kw)
    observed = plugins.parent / "observed"
    observed.mkdir(exist_ok=True)
    (folder / "observe.json").write_text(json.dumps({"dir": str(observed)}))
    return observed


def probed_messages(path: Path) -> list[tuple[Any, float]]:
    """Each message the probe sink got, decoded, with its arrival time."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        message, at = line.rsplit("\t", 1)
        out.append((json.loads(message), float(at)))
    return out


def noted(observed: Path, filename: str) -> list[int]:
    path = observed / filename
    return [int(line) for line in path.read_text().split()] if path.exists() else []
