"""Where a sink listens (``channels.pull_listener``): an address held by the process being replaced, and a leftover."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from sdk import channels
from sdk.protocol.ipc_listen import IpcPullListener
from sdk.protocol.ipc_wire import IpcPushDialer

pytestmark = [pytest.mark.e2e]


def test_waits_while_the_previous_process_listens_then_takes_the_address(ipc_dir: Path) -> None:
    path = ipc_dir / "sink.ipc"
    previous = IpcPullListener(path)
    threading.Timer(0.3, previous.close).start()
    started = time.monotonic()
    listener = channels.pull_listener(str(path))
    try:
        assert 0.25 < time.monotonic() - started < channels.LISTEN_ATTEMPTS * channels.LISTEN_INTERVAL_S
        dialer = IpcPushDialer(path)
        assert dialer.send(b"to the next process", 2.0)
        assert listener.recv(5.0) == b"to the next process"
        dialer.close()
    finally:
        listener.close()


def test_a_leftover_socket_file_is_replaced_at_once(ipc_dir: Path) -> None:
    """A killed process leaves its socket file behind; nobody listens on it."""
    path = ipc_dir / "sink.ipc"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(path))
    dead.close()
    assert path.exists()
    started = time.monotonic()
    listener = channels.pull_listener(str(path))
    try:
        assert time.monotonic() - started < channels.LISTEN_INTERVAL_S
    finally:
        listener.close()


def test_an_address_that_stays_taken_fails_naming_it(ipc_dir: Path) -> None:
    path = ipc_dir / "sink.ipc"
    holder = IpcPullListener(path)
    try:
        with pytest.raises(ConnectionError, match=f"cannot listen on ipc://{path}: the address is in use"):
            channels.pull_listener(str(path))
    finally:
        holder.close()
