"""The listening ends of nng's wire format (sdk/protocol/ipc_listen.py), against real nng dialers
and against raw sockets that break the format."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pynng
import pytest

from sdk.protocol.ipc_listen import IpcPullListener, IpcRepListener
from sdk.protocol.ipc_wire import PUSH_GREETING, REQ_GREETING

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


# --- REP: the function channel's end ------------------------------------------


@pytest.fixture
def rep(ipc_dir: Path):
    listener = IpcRepListener(ipc_dir / "rep.ipc")
    yield listener
    listener.close()


def req(rep: IpcRepListener) -> pynng.Req0:
    sock = pynng.Req0(recv_timeout=5000, send_timeout=5000, resend_time=0)
    sock.dial(f"ipc://{rep.path}", block=True)
    return sock


def test_the_reply_reaches_the_request_and_the_next_request_follows(rep):
    """The inverted dance of a function channel: each reply is a call, each next request its answer."""
    plugin = req(rep)
    try:
        plugin.send(b"handshake")
        assert rep.recv(5) == b"handshake"
        for n in range(200):
            assert rep.send(f"call {n}".encode(), 1.0)
            assert plugin.recv() == f"call {n}".encode()
            plugin.send(f"answer {n}".encode())
            assert rep.recv(5) == f"answer {n}".encode()
    finally:
        plugin.close()


def test_a_newer_request_takes_the_reply_and_a_new_process_gets_it(rep):
    """A REQ that gave up and asked again, or a new process, gets the reply; the older request does not."""
    old = req(rep)
    new = req(rep)
    try:
        old.send(b"handshake old")
        assert rep.recv(5) == b"handshake old"
        new.send(b"handshake new")
        assert rep.recv(5) == b"handshake new"
        assert rep.send(b"call", 1.0)
        assert new.recv() == b"call"
        old.recv_timeout = 200
        with pytest.raises(pynng.Timeout):
            old.recv()
    finally:
        old.close()
        new.close()


def test_a_reply_to_a_peer_that_left_is_dropped_quietly(rep):
    plugin = req(rep)
    plugin.send(b"handshake")
    assert rep.recv(5) == b"handshake"
    plugin.close()  # whether or not the listener has read the end of the connection yet:
    assert rep.send(b"call", 1.0)  # the reply is dropped, as nng drops it
    with pytest.raises(RuntimeError):
        rep.send(b"again", 1.0)  # no request to reply to


def test_a_request_without_a_request_id_is_ignored(rep):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(os.fspath(rep.path))
        assert sock.recv(8) == b"\x00SP\x00\x00\x31\x00\x00"
        sock.sendall(REQ_GREETING + frame(b"\x00\x00\x00\x01no top bit") + frame(b"\x80\x00\x00\x07fine"))
        assert rep.recv(5) == b"fine"
        assert rep.send(b"reply", 1.0)
        assert sock.recv(64) == frame(b"\x80\x00\x00\x07reply")
    finally:
        sock.close()


def test_close_removes_its_own_socket_file_but_not_a_successors(ipc_dir: Path) -> None:
    """A plugin's next version may listen on the address already; the old listener's close must not remove it."""
    path = ipc_dir / "taken.ipc"
    old = IpcPullListener(path)
    old.close()
    assert not path.exists()
    old = IpcPullListener(path)
    path.unlink()
    new = IpcPullListener(path)
    try:
        old.close()
        assert path.exists()
        sock = push(new)
        try:
            sock.send(b"to the successor")
            assert new.recv(5.0) == b"to the successor"
        finally:
            sock.close()
    finally:
        new.close()
