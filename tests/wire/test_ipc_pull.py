"""The host's own PULL end of the nng wire format (loader/wire/ipc_pull.py), against real nng PUSH dialers
and against raw sockets that break the format."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pynng
import pytest

from loader.wire.ipc_pull import PUSH_GREETING, IpcPullListener

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def listener(ipc_dir: Path):
    pull = IpcPullListener(ipc_dir / "pull.ipc")
    yield pull
    pull.close()


def push(listener: IpcPullListener, send_timeout_ms: int = 5000) -> pynng.Push0:
    sock = pynng.Push0(send_timeout=send_timeout_ms)
    sock.dial(f"ipc://{listener.path}", block=True)
    return sock


def recv_all(listener: IpcPullListener, count: int, timeout: float = 10.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    got: list[bytes] = []
    while len(got) < count:
        message = listener.recv(max(0.0, deadline - time.monotonic()))
        assert message is not None, f"only {len(got)} of {count} messages arrived"
        got.append(message)
    return got


class Collector(threading.Thread):
    """Receives ``count`` messages on its own thread, so senders are not held up by back-pressure."""

    def __init__(self, listener: IpcPullListener, count: int) -> None:
        super().__init__(daemon=True)
        self.listener, self.count = listener, count
        self.got: list[bytes] = []
        self.start()

    def run(self) -> None:
        self.got = recv_all(self.listener, self.count)

    def result(self) -> list[bytes]:
        self.join(15)
        assert len(self.got) == self.count, f"{len(self.got)} of {self.count} messages arrived"
        return self.got


def raw_peer(listener: IpcPullListener) -> socket.socket:
    """A Unix socket speaking the wire format by hand; it has read the listener's greeting."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(os.fspath(listener.path))
    assert sock.recv(8) == b"\x00SP\x00\x00\x51\x00\x00"
    return sock


def frame(body: bytes) -> bytes:
    return b"\x01" + len(body).to_bytes(8, "big") + body


def test_an_nng_dial_completes_before_anyone_receives(listener):
    """eKuiper's SDK dials while it handles ``start``, before the host's receiving thread runs."""
    started = time.monotonic()
    sock = push(listener)
    try:
        assert time.monotonic() - started < 2
        sock.send(b"first")
        assert listener.recv(5) == b"first"
    finally:
        sock.close()


def test_each_peer_in_order_several_peers_at_once(listener):
    peers = [push(listener) for _ in range(3)]
    collector = Collector(listener, 900)
    try:
        for n in range(300):
            for index, peer in enumerate(peers):
                peer.send(f"{index}:{n}".encode())
        got = collector.result()
    finally:
        for peer in peers:
            peer.close()
    for index in range(3):
        mine = [int(m.split(b":")[1]) for m in got if m.startswith(f"{index}:".encode())]
        assert mine == list(range(300))


def test_a_big_message_arrives_whole_and_so_does_the_next(listener):
    big = os.urandom(5 * 1024 * 1024)
    peer = push(listener)
    collector = Collector(listener, 2)
    try:
        peer.send(big)
        peer.send(b"after")
        assert collector.result() == [big, b"after"]
    finally:
        peer.close()


def test_frames_split_anywhere_are_put_back_together(listener):
    stream = PUSH_GREETING + b"".join(frame(f"m{n}".encode() * n) for n in range(40))
    sock = raw_peer(listener)
    collector = Collector(listener, 40)
    try:
        for start in range(0, len(stream), 7):  # cut through greetings, headers and bodies
            sock.sendall(stream[start : start + 7])
            time.sleep(0.0005)
        assert collector.result() == [f"m{n}".encode() * n for n in range(40)]
    finally:
        sock.close()


def test_a_peer_that_is_not_a_push_is_refused_and_the_others_keep_going(listener):
    good = push(listener)
    stranger = raw_peer(listener)
    liar = raw_peer(listener)
    try:
        stranger.sendall(b"GET / HTTP/1.1\r\n\r\n")
        liar.sendall(PUSH_GREETING + frame(b"fine") + b"\x07" + (3).to_bytes(8, "big") + b"bad")
        good.send(b"from the good one")
        got = recv_all(listener, 2)
        assert sorted(got) == [b"fine", b"from the good one"]  # the liar's frame before the bad one counts
        deadline = time.monotonic() + 5
        while listener.refused < 2 and time.monotonic() < deadline:
            listener.recv(0.05)
        assert listener.refused == 2
        for sock in (stranger, liar):  # disconnected: the peer reads end of stream
            assert sock.recv(16) == b""
        good.send(b"still here")
        assert listener.recv(5) == b"still here"
    finally:
        for sock in (stranger, liar):
            sock.close()
        good.close()


def test_nothing_is_read_while_nobody_receives(listener):
    """Back-pressure as with an nng PULL: the pusher's sends end up timing out, they do not pile up here."""
    peer = push(listener, send_timeout_ms=300)
    payload = b"x" * 1024
    sent = 0
    try:
        with pytest.raises(pynng.Timeout):
            while sent < 64 * 1024:  # 64 MB: far more than the socket buffers hold
                peer.send(payload)
                sent += 1
        assert sent < 16 * 1024, f"{sent} KiB went out although nobody received"
        assert recv_all(listener, sent) == [payload] * sent  # and every one of them is delivered
    finally:
        peer.close()


def test_recv_waits_for_its_timeout_and_no_longer(listener):
    started = time.monotonic()
    assert listener.recv(0.2) is None
    assert 0.2 <= time.monotonic() - started < 1.0
    assert listener.recv_nowait() is None


def test_close_ends_the_accepting_thread_and_every_descriptor(ipc_dir: Path):
    before_fds = len(os.listdir("/proc/self/fd"))
    before_threads = threading.active_count()
    pull = IpcPullListener(ipc_dir / "closing.ipc")
    peer = raw_peer(pull)
    peer.sendall(PUSH_GREETING + frame(b"one"))
    assert pull.recv(5) == b"one"
    pull.close()
    peer.close()
    assert threading.active_count() == before_threads
    assert len(os.listdir("/proc/self/fd")) == before_fds
