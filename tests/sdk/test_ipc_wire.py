"""The dialing PUSH end in plain sockets (sdk/protocol/ipc_wire.py), against real nng listeners and raw sockets.

Both the loader's sink channel and the sdk's source and ack ends send through
it, to peers that run nng: what they receive must be exactly what pynng's
PUSH would have given them, whole messages in order, across listeners that
come, go and are replaced.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pynng
import pytest

from sdk.protocol.ipc_wire import PULL_GREETING, PUSH_GREETING, REDIAL_MAX_S, IpcPushDialer, greeting

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def path(ipc_dir: Path) -> Path:
    return ipc_dir / "push.ipc"


@pytest.fixture
def dialer(path: Path) -> Iterator[IpcPushDialer]:
    dialer = IpcPushDialer(path)
    yield dialer
    dialer.close()


def nng_pull(path: Path, timeout_ms: int = 5000) -> pynng.Pull0:
    sock = pynng.Pull0(recv_timeout=timeout_ms, recv_max_size=0)
    sock.listen(f"ipc://{path}")
    return sock


def receive_all(sock: pynng.Pull0, count: int, into: list[bytes]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(sock.recv() for _ in range(count)), daemon=True)
    thread.start()
    return thread


def test_an_nng_pull_gets_every_message_whole_and_in_order(dialer: IpcPushDialer, path: Path) -> None:
    pull = nng_pull(path)
    try:
        messages = [f"m{n}".encode() * (n % 50 + 1) for n in range(2000)] + [os.urandom(5_000_000), b"last"]
        got: list[bytes] = []
        reader = receive_all(pull, len(messages), got)
        for message in messages:
            assert dialer.send(message, 5.0)
        reader.join(10)
        assert got == messages
    finally:
        pull.close()


def test_nobody_listening_is_a_false_send_after_the_timeout_then_a_listener_gets_it(
    dialer: IpcPushDialer, path: Path
) -> None:
    started = time.monotonic()
    assert not dialer.send(b"early", 0.2)
    assert 0.2 <= time.monotonic() - started < 1.0
    assert "No such file" in dialer.last_error and not dialer.connected
    pull = nng_pull(path)
    try:
        started = time.monotonic()
        assert dialer.send(b"now", 2.0)
        assert time.monotonic() - started < REDIAL_MAX_S + 0.5  # redialled within the back-off's bound
        assert pull.recv() == b"now"
    finally:
        pull.close()


def test_a_replaced_listener_gets_the_next_messages(dialer: IpcPushDialer, path: Path) -> None:
    """A plugin process replaced by its next version listens again on the same address."""
    old = nng_pull(path)
    assert dialer.send(b"to the old one", 2.0)
    assert old.recv() == b"to the old one"
    old.close()
    path.unlink(missing_ok=True)
    new = nng_pull(path)
    try:
        for n in range(5):
            assert dialer.send(b"to the new one %d" % n, 2.0)
        assert [new.recv() for _ in range(5)] == [b"to the new one %d" % n for n in range(5)]
    finally:
        new.close()


def raw_listener(path: Path, greet: bytes = PULL_GREETING) -> tuple[socket.socket, list[socket.socket]]:
    """A listener speaking the format by hand that never reads after the greeting; accepted peers in the list."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(4)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)  # before the greeting: the dialer's send returns only after it
            conn.sendall(greet)

    threading.Thread(target=accept, daemon=True).start()
    return listener, accepted


def read_until_eof(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = bytearray()
    while chunk := conn.recv(1 << 20):
        data += chunk
    return bytes(data)


def test_a_message_given_up_half_way_is_cut_off_with_its_connection(dialer: IpcPushDialer, path: Path) -> None:
    """The receiver must not mistake the start of the next message for the rest of the cut one."""
    listener, accepted = raw_listener(path)
    try:
        big = b"x" * 20_000_000  # far more than a socket buffer holds
        assert not dialer.send(big, 0.3)
        assert not dialer.connected
        stream = read_until_eof(accepted[0])
        assert stream.startswith(PUSH_GREETING + b"\x01" + len(big).to_bytes(8, "big"))
        assert 9 < len(stream) - len(PUSH_GREETING) < 9 + len(big)  # a part of it, then the end
        assert dialer.send(b"next", 2.0)  # on a new connection, whole
        accepted[1].settimeout(5)
        assert accepted[1].recv(100) == PUSH_GREETING + b"\x01" + (4).to_bytes(8, "big") + b"next"
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_give_up_ends_a_blocked_send_within_a_slice(dialer: IpcPushDialer, path: Path) -> None:
    listener, accepted = raw_listener(path)
    stop = threading.Event()
    try:
        while dialer.send(b"y" * 4096, 0.05):  # fill the socket's buffer: nobody reads
            pass
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        assert not dialer.send(b"blocked", 30.0, stop.is_set)
        assert 0.15 < time.monotonic() - started < 1.0
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_listener_of_another_protocol_is_refused(dialer: IpcPushDialer, path: Path) -> None:
    listener, accepted = raw_listener(path, greet=greeting(0x31))  # a REP
    try:
        assert not dialer.send(b"not for a REP", 0.3)
        assert dialer.refused >= 1 and "not as a PULL" in dialer.last_error
        assert not dialer.connected
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_closed_dialer_sends_nothing_and_does_not_dial_again(dialer: IpcPushDialer, path: Path) -> None:
    pull = nng_pull(path, timeout_ms=300)
    try:
        assert dialer.send(b"before", 2.0)
        assert pull.recv() == b"before"
        dialer.close()
        started = time.monotonic()
        assert not dialer.send(b"after", 2.0)
        assert not dialer.dial(2.0)
        assert time.monotonic() - started < 0.1
        with pytest.raises(pynng.Timeout):
            pull.recv()
    finally:
        pull.close()


def test_waits_work_on_descriptors_above_1024(
    dialer: IpcPushDialer, path: Path, hold_low_descriptors: Callable[[], None]
) -> None:
    """``select`` refuses descriptors numbered 1024 and up; a wait for the greeting or for room must not."""
    listener, accepted = raw_listener(path)
    try:
        hold_low_descriptors()
        assert dialer.send(b"first", 2.0)  # waited for the greeting
        assert dialer.fileno() > 1024
        while dialer.send(b"z" * 4096, 0.05):  # fill the buffer, then wait for room until the timeout
            pass
        assert dialer.connected
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
