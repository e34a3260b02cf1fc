"""The plugin side's sockets (pynng for control and functions, the wire ends of sdk/protocol for data),
and the inverted request loop.

The host creates every listening socket before it asks the plugin to dial,
but a dial can still race a host that is (re)starting, and a sink's listen
can race the previous process of the same plugin still holding the address
during a hot swap.  Both are retried for a bounded time, then fail with an
error that names the address.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import pynng

from sdk.protocol.handshake import HANDSHAKE
from sdk.protocol.ipc_listen import IpcPullListener, is_live_socket
from sdk.protocol.ipc_wire import IpcPushDialer

DIAL_ATTEMPTS = 50
DIAL_INTERVAL_S = 0.1
#: How long a dial waits for the host's listener before the start fails.
DIAL_TIMEOUT_S = DIAL_ATTEMPTS * DIAL_INTERVAL_S
LISTEN_ATTEMPTS = 20
LISTEN_INTERVAL_S = 0.05
RETRY_PAUSE_S = 0.1
#: How long a blocked receive lasts before its thread looks whether its symbol is stopping.
SLICE_MS = 100

_log = logging.getLogger("sdk.channels")


def address(ipc_dir: str, filename: str) -> str:
    """The nng URL of a socket file in the IPC directory."""
    return f"ipc://{os.path.join(ipc_dir, filename)}"


def dial(sock: pynng.Socket, url: str) -> None:
    """Dial until the host's listener answers; raise ConnectionError naming the address."""
    sock.recv_max_size = 0
    last: Exception | None = None
    for _ in range(DIAL_ATTEMPTS):
        try:
            sock.dial(url, block=True)
            return
        except pynng.NNGException as err:
            last = err
            time.sleep(DIAL_INTERVAL_S)
    sock.close()
    raise ConnectionError(f"nobody listens on {url} ({last}) after {DIAL_TIMEOUT_S:g}s")


def push_dialer(path: str) -> IpcPushDialer:
    """A PUSH connected to the host's listener at ``path``; ConnectionError naming it if nobody listens in time."""
    dialer = IpcPushDialer(path)
    if not dialer.dial(DIAL_TIMEOUT_S):
        raise ConnectionError(f"nobody listens on ipc://{path} ({dialer.last_error}) after {DIAL_TIMEOUT_S:g}s")
    return dialer


def pull_listener(path: str) -> IpcPullListener:
    """Listen for a sink's messages at ``path``, waiting while a previous owner still listens there.

    During a hot swap the process being replaced may hold the address for a
    moment; a socket file nobody listens on any more is a leftover (a killed
    process) and is removed, as nng does.
    """
    last = "the address is in use"
    for _ in range(LISTEN_ATTEMPTS):
        if _address_free(path):
            try:
                return IpcPullListener(Path(path))
            except OSError as err:
                last = str(err)
        time.sleep(LISTEN_INTERVAL_S)
    raise ConnectionError(f"cannot listen on ipc://{path}: {last}")


def _address_free(path: str) -> bool:
    """Whether nobody listens at ``path``; a leftover socket file is removed."""
    if is_live_socket(path):
        return False
    with contextlib.suppress(OSError):
        os.unlink(path)
    return True


class Closable(Protocol):
    """A socket: pynng's, or one of the wire ends of sdk/protocol (ipc_wire, ipc_listen)."""

    def close(self) -> None: ...


def close_after(thread: threading.Thread | None, sockets: Sequence[Closable | None], timeout: float) -> None:
    """Close ``sockets`` once ``thread``, which uses them, has ended.

    nng can abort the whole process (``panic: pthread_mutex_lock: Invalid
    argument``) when a socket is closed while another thread is inside a send
    or receive on it, so a stop never closes a socket under its thread: it
    waits up to ``timeout`` for the thread, and if the thread is still busy
    (a receive waiting out its timeout, plugin code that does not return), a
    helper thread closes the sockets when it ends.
    """
    open_sockets = [sock for sock in sockets if sock is not None]

    def close() -> None:
        for sock in open_sockets:
            sock.close()

    if thread is None or thread is threading.current_thread():
        close()
        return
    thread.join(timeout)
    if not thread.is_alive():
        close()
        return

    def close_later() -> None:
        thread.join()
        close()

    threading.Thread(target=close_later, name=f"close-{thread.name}", daemon=True).start()


def req_dialer(url: str, keepalive_ms: int) -> pynng.Req0:
    """A REQ socket for an inverted channel: no automatic resend, recv timeout = keepalive."""
    sock = pynng.Req0(recv_timeout=keepalive_ms, resend_time=0)
    dial(sock, url)
    return sock


def _await_reply(sock: pynng.Req0, poller: select.poll, keepalive_ms: int, closing: threading.Event) -> bytes | None:
    """The host's answer to our request, watching ``closing`` every ``SLICE_MS``.

    A REQ receive that times out cancels the request, so the wait cannot be
    cut into timed receives; it polls the socket's receive descriptor
    instead and takes the answer without blocking once one is there.
    None after ``keepalive_ms`` without an answer, or when closing.
    """
    deadline = time.monotonic() + keepalive_ms / 1000
    while not closing.is_set():
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            break
        if poller.poll(min(remaining_ms, SLICE_MS)):
            try:
                return sock.recv(block=False)
            except pynng.TryAgain:
                continue
    return None


def serve_inverted(
    sock: pynng.Req0, handle: Callable[[bytes], bytes], closing: threading.Event, handshake: bytes = HANDSHAKE
) -> None:
    """Run the plugin end of an inverted REQ/REP channel until ``closing`` is set and the socket closed.

    The host answers our request with a command; we send the result as the
    next request.  When nothing comes within the receive timeout we send
    ``handshake`` again: it keeps the channel alive and tells a host whose
    command got lost to send it again.  ``handle`` must not raise.

    The owner sets ``closing`` and leaves the socket to ``close_after``: it
    is closed once this loop noticed, never under a blocked call.  If the
    socket is closed anyway (pynng 0.9 then reports various errors, such as
    ConnectionReset), any error after ``closing`` means "stop"; other errors
    are retried.  ``handshake`` is what is sent as the handshake
    (``sdk.protocol.handshake.handshake_message``).
    """
    request = handshake
    keepalive_ms = sock.recv_timeout
    poller = select.poll()
    poller.register(sock.recv_fd, select.POLLIN)
    while not closing.is_set():
        try:
            sock.send(request)
            command = _await_reply(sock, poller, keepalive_ms, closing)
        except (pynng.Timeout, pynng.BadState):
            command = None
        except pynng.NNGException as err:
            if closing.is_set():
                return
            _log.warning("channel error, handshaking again", extra={"sdk": {"error": str(err)}})
            closing.wait(RETRY_PAUSE_S)
            request = handshake
            continue
        request = handshake if command is None else handle(command)
