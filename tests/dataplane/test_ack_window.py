"""The sink ack window: several requireAck messages in flight, in order, none lost.

``PortableSink`` talks to a fake channel here: a scripted plugin process that
takes every message sent, acks them in order when asked, and can be replaced
(its unacknowledged messages are then gone and the supervisor's generation
moves on), so every case runs in microseconds.  The real sockets and plugin
processes are in tests/dataplane/test_ack_window_e2e.py.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loader.config import ConfigError, LoaderConfig, SinkSettings, load_config
from loader.dataplane.sink import MAX_INFLIGHT_BYTES, PortableSink, unacknowledged
from loader.dataplane.sink_options import Message
from loader.plugins.manifest import load_plugin
from loader.plugins.status import StatusBoard
from loader.plugins.supervisor import PluginSupervisor
from loader.wire.sink import SinkChannel, SinkTimeout
from sdk.protocol.handshake import declared_ack_window
from sdk.protocol.messages import ACK_OK, split_sink_batch
from tests.support.loader_process import make_plugin


class FakePlugin:
    """The windowed half of SinkChannel (send_message, recv_ack, ack_result, discard_acks) before a scripted
    plugin process that acks in order; hooks may replace the process before a send or an ack."""

    def __init__(self, supervisor: SimpleNamespace, reply: Callable[[bytes], bytes] = lambda payload: ACK_OK) -> None:
        self.supervisor = supervisor
        self.reply = reply
        self.send_timeout = 0.05
        #: Every message a process took, with that process's generation, in the order taken.
        self.received: list[tuple[int, bytes]] = []
        #: Taken by the current process, not acknowledged yet.
        self.pending: deque[bytes] = deque()
        self.most_in_flight = 0
        self.discarded = 0
        self.sends = self.ack_waits = 0
        #: Acks a replaced process sent before it went, not taken yet.
        self.queued: list[bytes] = []
        self.queued_at = 0.0
        self.before_send: Callable[[FakePlugin], None] = lambda plugin: None
        self.before_ack: Callable[[FakePlugin], None] = lambda plugin: None
        self._real = SinkChannel(Path("d.ipc"), Path("a.ipc"), "fake", "rec")

    def replace(self, acked: int = 0, late_s: float = 0.0) -> None:
        """A new process; the old one acked its next ``acked`` messages before it went (those acks reach
        the host ``late_s`` from now), the rest of its unacknowledged messages are gone."""
        self.supervisor.generation += 1
        self.queued = [self.reply(self.pending.popleft()) for _ in range(acked)]
        self.queued_at = time.monotonic() + late_s
        self.pending.clear()

    def send_message(self, payload: bytes, abandon: Callable[[], bool] | None = None) -> None:
        self.sends += 1
        self.before_send(self)
        if abandon is not None and abandon():
            raise SinkTimeout("the plugin process was replaced; the record was not sent")
        self.received.append((self.supervisor.generation, payload))
        self.pending.append(payload)
        self.most_in_flight = max(self.most_in_flight, len(self.pending))

    def recv_ack(self, abandon: Callable[[], bool] | None = None, block: bool = True) -> bytes | None:
        if self.queued and time.monotonic() >= self.queued_at:  # as nng: an ack there is returned first
            return self.queued.pop(0)
        if not block:
            return None
        self.ack_waits += 1
        self.before_ack(self)
        if abandon is not None and abandon():
            raise SinkTimeout("the plugin process was replaced")
        assert self.pending, "the sink waits for an ack with nothing in flight: it would hang"
        return self.reply(self.pending.popleft())

    def ack_result(self, reply: bytes) -> int | None:
        return self._real.ack_result(reply)

    def discard_acks(self) -> None:
        self.discarded += 1

    def close(self) -> None:
        pass

    def numbers(self, generation: int | None = None) -> list[int]:
        """The ``n`` of every message taken (by the process of ``generation``), batches line by line."""
        out = []
        for taken_by, payload in self.received:
            if generation is None or taken_by == generation:
                lines = split_sink_batch(payload)
                out.extend(row["n"] for line in (lines or [payload]) for row in json.loads(line))
        return out


def windowed_sink(
    tmp_path: Path, window: int, max_records: int = 0, reply: Callable[[bytes], bytes] = lambda p: ACK_OK
) -> tuple[PortableSink, FakePlugin]:
    supervisor = SimpleNamespace(
        name="fake", generation=1, batch_max_records=max_records, ack_window=window, process=None
    )
    sink = PortableSink(supervisor, "rec", "r1", 0, {"requireAck": True}, tmp_path)  # type: ignore[arg-type]
    plugin = FakePlugin(supervisor, reply)
    sink.channel = plugin  # type: ignore[assignment]
    return sink, plugin


def results(numbers: range | list[int]) -> list[list[dict[str, Any]]]:
    return [[{"n": n}] for n in numbers]


def test_a_window_keeps_the_order_and_never_more_than_its_size_in_flight(tmp_path: Path) -> None:
    sink, plugin = windowed_sink(tmp_path, window=4)
    sink.deliver_many(results(range(20)))
    assert plugin.numbers() == list(range(20))
    assert plugin.most_in_flight == 4
    # It returns with fewer than the window in flight: the rule's next results need no round trip first.
    assert len(plugin.pending) == 3 and sink.metrics.records_out == 17
    sink.deliver_many(results(range(20, 25)))
    assert plugin.most_in_flight == 4 and len(plugin.pending) == 3
    sink.settle()
    assert not plugin.pending and sink.metrics.records_in == sink.metrics.records_out == 25
    assert plugin.numbers() == list(range(25))


def test_a_window_of_one_waits_for_each_ack_as_ekuiper_plugins_need(tmp_path: Path) -> None:
    sink, plugin = windowed_sink(tmp_path, window=1)
    sink.deliver_many(results(range(10)))
    assert plugin.most_in_flight == 1
    assert not plugin.pending and sink.metrics.records_out == 10  # nothing left in flight to settle
    assert plugin.ack_waits == 10


def test_big_messages_fill_the_window_by_bytes_first(tmp_path: Path) -> None:
    """In flight is memory too: a window of 32 messages of 1.5 MB would hold 48 MB for a sink that does
    not acknowledge; the byte bound keeps it to what fits in MAX_INFLIGHT_BYTES, plus the one message that
    crossed it."""
    sink, plugin = windowed_sink(tmp_path, window=32)
    blob = "x" * (1536 * 1024)
    sink.deliver_many([[{"n": n, "blob": blob}] for n in range(12)])
    assert plugin.most_in_flight == MAX_INFLIGHT_BYTES // len(blob) + 1 < 32
    assert max(len(p) for p in plugin.pending) * plugin.most_in_flight <= MAX_INFLIGHT_BYTES + 2 * len(blob)
    sink.settle()
    assert plugin.numbers() == list(range(12)) and sink.metrics.records_out == 12
    # small messages still get the whole window
    sink.deliver_many(results(range(12, 80)))
    assert plugin.most_in_flight == 32


def test_a_replaced_process_gets_every_unacknowledged_message_again_in_order(tmp_path: Path, log_lines) -> None:
    sink, plugin = windowed_sink(tmp_path, window=4)

    def replace_at_third_ack(p: FakePlugin) -> None:
        if p.ack_waits == 3:
            p.replace()

    plugin.before_ack = replace_at_third_ack
    sink.deliver_many(results(range(8)))
    sink.settle()
    # The old process acked 0 and 1; 2-5 were in flight when it went: all of them again, before 6 and 7.
    assert plugin.numbers(1) == [0, 1, 2, 3, 4, 5]
    assert plugin.numbers(2) == [2, 3, 4, 5, 6, 7]
    assert plugin.discarded == 1  # the old process's late acks are dropped before the first resend
    assert sink.metrics.records_out == 8 and plugin.most_in_flight == 4
    retrying = log_lines("sink.retrying")
    assert len(retrying) == 1 and retrying[0]["reason"] == "sending the 4 unacknowledged messages again"
    assert len(log_lines("sink.resumed")) == 1


def test_what_the_replaced_process_acknowledged_before_it_went_is_not_sent_again(tmp_path: Path) -> None:
    sink, plugin = windowed_sink(tmp_path, window=4)

    def replace_at_third_ack(p: FakePlugin) -> None:
        if p.ack_waits == 3:
            p.replace(acked=2)  # 2 and 3 were acked too: their acks are queued when the change is seen

    plugin.before_ack = replace_at_third_ack
    sink.deliver_many(results(range(8)))
    sink.settle()
    assert plugin.numbers(1) == [0, 1, 2, 3, 4, 5]
    assert plugin.numbers(2) == [4, 5, 6, 7]
    assert sink.metrics.records_out == 8


def test_acks_of_the_replaced_process_still_on_their_way_are_waited_for_a_moment(tmp_path: Path) -> None:
    sink, plugin = windowed_sink(tmp_path, window=4)

    def replace_at_third_ack(p: FakePlugin) -> None:
        if p.ack_waits == 3:
            p.replace(acked=2, late_s=0.01)  # nng has not taken them off the connection yet

    plugin.before_ack = replace_at_third_ack
    sink.deliver_many(results(range(8)))
    sink.settle()
    assert plugin.numbers(2) == [4, 5, 6, 7]


def test_a_process_replaced_while_the_rule_was_idle_gets_the_messages_in_flight_before_new_ones(
    tmp_path: Path,
) -> None:
    sink, plugin = windowed_sink(tmp_path, window=4)
    sink.deliver_many(results(range(3)))
    assert len(plugin.pending) == 3
    plugin.replace()
    sink.deliver_many(results([3]))
    sink.settle()
    assert plugin.numbers(1) == [0, 1, 2] and plugin.numbers(2) == [0, 1, 2, 3]
    assert sink.metrics.records_out == 4


def test_a_send_is_abandoned_when_the_process_changes_so_it_cannot_overtake_the_messages_in_flight(
    tmp_path: Path,
) -> None:
    sink, plugin = windowed_sink(tmp_path, window=8)

    def replace_during_third_send(p: FakePlugin) -> None:
        if p.sends == 3:
            p.replace()

    plugin.before_send = replace_during_third_send
    sink.deliver_many(results(range(5)))
    sink.settle()
    assert plugin.numbers(1) == [0, 1]
    assert plugin.numbers(2) == [0, 1, 2, 3, 4]  # 2 went to no one: it waited for 0 and 1 to go again first
    assert sink.metrics.records_out == 5


def test_error_acks_in_a_window_count_as_one_at_a_time(tmp_path: Path) -> None:
    def reply(payload: bytes) -> bytes:
        return b'{"error": "no 3"}' if payload == b'[{"n":3}]' else ACK_OK

    sink, plugin = windowed_sink(tmp_path, window=4, reply=reply)
    sink.deliver_many(results(range(8)))
    sink.settle()
    metrics = sink.metrics
    assert (metrics.records_in, metrics.records_out, metrics.exceptions) == (8, 7, 1)
    assert metrics.last_exception == "no 3"
    assert plugin.numbers() == list(range(8))  # refused is handled: never sent again
    assert sink.error_generation == 1


def test_batch_error_acks_in_a_window_count_their_failed_messages(tmp_path: Path) -> None:
    def reply(payload: bytes) -> bytes:
        first = payload.startswith(b'#batch 3\n[{"n":0}]')
        return json.dumps({"error": "1 of 3 records failed", "failed": 1}).encode() if first else ACK_OK

    sink, plugin = windowed_sink(tmp_path, window=2, max_records=3, reply=reply)
    sink.deliver_many(results(range(7)))
    sink.settle()
    assert [payload.split(b"\n")[0] for _, payload in plugin.received] == [b"#batch 3", b"#batch 3", b'[{"n":6}]']
    assert plugin.most_in_flight == 2
    assert (sink.metrics.records_out, sink.metrics.exceptions) == (6, 1)


def test_a_partial_batch_ack_sends_the_rest_and_every_later_message_to_the_next_process(tmp_path: Path) -> None:
    def reply(payload: bytes) -> bytes:
        if plugin.supervisor.generation == 1:  # the process stops after the first message of its first batch
            plugin.replace()
            return b'{"done": 1}'
        return ACK_OK

    sink, plugin = windowed_sink(tmp_path, window=4, max_records=3, reply=reply)
    sink.deliver_many(results(range(6)))
    sink.settle()
    assert plugin.numbers(1) == [0, 1, 2, 3, 4, 5]
    assert plugin.numbers(2) == [1, 2, 3, 4, 5]  # cut into batches anew for the next process
    assert sink.metrics.records_out == 6


def test_without_require_ack_nothing_waits_for_acks(tmp_path: Path) -> None:
    sink, plugin = windowed_sink(tmp_path, window=4)
    sink.require_ack = False
    sink.deliver_many(results(range(6)))
    sink.settle()
    assert plugin.ack_waits == 0 and plugin.numbers() == list(range(6))
    assert sink.metrics.records_out == 6


def test_unacknowledged_puts_the_messages_in_flight_first_less_what_the_oldest_handled() -> None:
    m = [Message({"n": n}, 1) for n in range(6)]
    assert list(unacknowledged([[m[0], m[1]], [m[2]]], [m[3], m[4]])) == m[:5]
    assert list(unacknowledged([[m[0], m[1], m[2]], [m[3]]], [m[4]], handled=2)) == [m[2], m[3], m[4]]
    assert list(unacknowledged([], [m[5]])) == [m[5]]


@pytest.mark.parametrize(
    ("capabilities", "window"),
    [({}, 1), ({"ackWindow": 64}, 64), ({"ackWindow": 0}, 1), ({"ackWindow": True}, 1), ({"ackWindow": "8"}, 1)],
)
def test_what_a_handshake_declares_as_ack_window(capabilities: dict, window: int) -> None:
    assert declared_ack_window(capabilities) == window


def test_the_window_is_the_smaller_of_the_setting_and_what_the_process_declared(tmp_path: Path) -> None:
    make_plugin(tmp_path / "plugins", "car")
    config = LoaderConfig(plugins_dir=tmp_path / "plugins", ipc_dir=tmp_path, sinks=SinkSettings(ack_window=32))
    supervisor = PluginSupervisor(load_plugin(tmp_path / "plugins/car"), config, StatusBoard())
    for declared, window in (({"ackWindow": 1024}, 32), ({"ackWindow": 4}, 4), ({}, 1)):
        supervisor.channel = SimpleNamespace(capabilities=declared)  # type: ignore[assignment]
        assert supervisor.ack_window == window
    supervisor.live.current = LoaderConfig(sinks=SinkSettings(ack_window=1))
    supervisor.channel = SimpleNamespace(capabilities={"ackWindow": 1024})  # type: ignore[assignment]
    assert supervisor.ack_window == 1


def test_the_setting_is_read_from_the_config_file_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "loader.yaml"
    assert load_config(None).sinks == SinkSettings(ack_window=32)
    path.write_text("sinks: {ack_window: 1}\n")
    assert load_config(path).sinks == SinkSettings(ack_window=1)
    path.write_text("sinks: {ack_window: 0}\n")
    with pytest.raises(ConfigError, match="sinks/ack_window"):
        load_config(path)
