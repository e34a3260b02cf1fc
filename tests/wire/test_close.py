"""No socket is closed while another thread is inside a call on it.

nng can abort the process (``panic: pthread_mutex_lock: Invalid argument``)
when that happens, which is how a loader died while a rule was deleted under
load.  The race itself is rare, so these tests check the rule that prevents
it: each channel's real socket is wrapped in a recorder that notes every
close made while a send or receive is in progress, and ``close`` is called
from another thread while a call blocks.  The blocked call must still end
promptly with DataChannelClosed.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynng
import pytest

from loader.wire.codec import DataChannelClosed
from loader.wire.exclusive import SLICE_S
from loader.wire.function import FunctionChannel
from loader.wire.sink import SinkChannel
from loader.wire.source import SourceChannel
from sdk import channels

# Real nng sockets between threads, and the close-race loop.
pytestmark = [pytest.mark.e2e]

#: A blocked call must end within this long of ``close``.
PROMPT_S = SLICE_S * 5


class RecordingSocket:
    """A real socket (pynng's, or one of the wire ends in sdk/protocol/: a listener or the dialer), with a note of
    every close made while a call was inside it."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.calls_inside = 0
        self.closed_under_a_call = False
        self.closed = threading.Event()
        self.entered = threading.Event()

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls_inside += 1
        self.entered.set()
        try:
            return method(*args, **kwargs)
        finally:
            self.calls_inside -= 1

    def recv(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.sock.recv, *args, **kwargs)

    def recv_nowait(self) -> Any:
        return self._call(self.sock.recv_nowait)

    def send(self, *args: Any, **kwargs: Any) -> None:
        self._call(self.sock.send, *args, **kwargs)

    def close(self) -> None:
        self.closed_under_a_call = self.calls_inside > 0
        self.sock.close()
        self.closed.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def close_while_blocked(call: Callable[[], Any], close: Callable[[], None], recorder: RecordingSocket) -> None:
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            caught.append(exc)

    caller = threading.Thread(target=run)
    caller.start()
    assert recorder.entered.wait(5), "the call never reached the socket"
    time.sleep(SLICE_S / 2)  # inside a slice, not between two
    started = time.monotonic()
    close()
    caller.join(5)
    assert not caller.is_alive()
    assert time.monotonic() - started < PROMPT_S
    assert len(caught) == 1 and isinstance(caught[0], DataChannelClosed), caught
    assert recorder.closed.is_set()
    assert not recorder.closed_under_a_call


def test_source_close_waits_for_the_receive_to_leave(ipc_dir: Path) -> None:
    channel = SourceChannel(ipc_dir / "src.ipc", "p", "s")
    channel.open()
    recorder = RecordingSocket(channel._socket)
    channel._socket = recorder  # type: ignore[assignment]
    close_while_blocked(lambda: channel.recv(timeout=30), channel.close, recorder)
    assert not channel.path.exists()


def test_source_batch_receive_too(ipc_dir: Path) -> None:
    channel = SourceChannel(ipc_dir / "src.ipc", "p", "s")
    channel.open()
    recorder = RecordingSocket(channel._socket)
    channel._socket = recorder  # type: ignore[assignment]
    close_while_blocked(lambda: channel.recv_batch(16, timeout=None), channel.close, recorder)


def test_sink_close_waits_for_a_send_nobody_takes(ipc_dir: Path) -> None:
    channel = SinkChannel(ipc_dir / "data.ipc", ipc_dir / "ack.ipc", "p", "s", send_timeout=30)
    channel.open()
    channel.connect()  # nobody listens: the send waits
    recorder = RecordingSocket(channel._push)
    channel._push = recorder  # type: ignore[assignment]
    close_while_blocked(lambda: channel.send({"n": 1}), channel.close, recorder)


def test_sink_close_waits_for_an_ack_wait(ipc_dir: Path) -> None:
    data = pynng.Pull0()
    data.listen(f"ipc://{ipc_dir / 'data.ipc'}")
    try:
        channel = SinkChannel(ipc_dir / "data.ipc", ipc_dir / "ack.ipc", "p", "s", require_ack=True, ack_timeout=30)
        channel.open()
        channel.connect()
        recorder = RecordingSocket(channel._acks)
        channel._acks = recorder  # type: ignore[assignment]
        close_while_blocked(lambda: channel.send({"n": 1}), channel.close, recorder)
    finally:
        data.close()


def test_function_close_waits_for_the_call(ipc_dir: Path) -> None:
    channel = FunctionChannel(ipc_dir / "func_f.ipc", "p", "f", timeout=30)
    channel.open()
    recorder = RecordingSocket(channel._socket)
    channel._socket = recorder  # type: ignore[assignment]
    close_while_blocked(lambda: channel.exec([1], "{}"), channel.close, recorder)
    assert not channel.path.exists()


@pytest.mark.parametrize("still_busy", [False, True])
def test_sdk_close_after_closes_only_once_the_thread_ended(still_busy: bool) -> None:
    """The plugin side: a stop hands its sockets to ``close_after`` instead of closing them."""
    sock = RecordingSocket(pynng.Pull0(recv_timeout=int(SLICE_S * 1000)))
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                sock.recv()
            except pynng.Timeout:
                continue

    thread = threading.Thread(target=receive)
    thread.start()
    assert sock.entered.wait(5)
    if not still_busy:
        stop.set()
    channels.close_after(thread, [sock], 0.5 if not still_busy else 0.05)  # type: ignore[list-item]
    assert sock.closed.is_set() is not still_busy  # a busy thread gets its socket closed later
    stop.set()
    thread.join(5)
    assert sock.closed.wait(5)
    assert not sock.closed_under_a_call


def test_the_close_race_loop_survives() -> None:
    """``python -m bench.closerace`` (the reproduction of the abort) runs clean: a short run here,
    the long ones with ``python -m bench.stress --closerace`` (docs/benchmarks.md)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.closerace", "--rounds", "20"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    assert "closerace: 20 rounds, no abort" in result.stdout
