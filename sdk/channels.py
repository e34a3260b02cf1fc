"""nng sockets of the plugin side, and the inverted request loop.

The host creates every listening socket before it asks the plugin to dial,
but a dial can still race a host that is (re)starting, and a sink's listen
can race the previous process of the same plugin still holding the address
during a hot swap.  Both are retried for a bounded time, then fail with an
error that names the address.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

import pynng

HANDSHAKE = b"handshake"
DIAL_ATTEMPTS = 50
DIAL_INTERVAL_S = 0.1
LISTEN_ATTEMPTS = 20
LISTEN_INTERVAL_S = 0.05
RETRY_PAUSE_S = 0.1

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
    raise ConnectionError(f"nobody listens on {url} ({last}) after {DIAL_ATTEMPTS * DIAL_INTERVAL_S:g}s")


def listen(sock: pynng.Socket, url: str) -> None:
    """Listen, retrying while a previous owner of the address lets go of it."""
    sock.recv_max_size = 0
    last: Exception | None = None
    for _ in range(LISTEN_ATTEMPTS):
        try:
            sock.listen(url)
            return
        except pynng.NNGException as err:
            last = err
            time.sleep(LISTEN_INTERVAL_S)
    sock.close()
    raise ConnectionError(f"cannot listen on {url}: {last}")


def push_dialer(url: str, send_timeout_ms: int) -> pynng.Push0:
    sock = pynng.Push0(send_timeout=send_timeout_ms)
    dial(sock, url)
    return sock


def pull_listener(url: str) -> pynng.Pull0:
    sock = pynng.Pull0()
    listen(sock, url)
    return sock


def req_dialer(url: str, keepalive_ms: int) -> pynng.Req0:
    """A REQ socket for an inverted channel: no automatic resend, recv timeout = keepalive."""
    sock = pynng.Req0(recv_timeout=keepalive_ms, resend_time=0)
    dial(sock, url)
    return sock


def handshake_message(capabilities: dict) -> bytes:
    """``handshake``, followed by the capabilities as JSON when there are any.

    ``handshake {"batch":1}`` still begins with ``h``, so any host (eKuiper
    included) takes it for a handshake; our host also reads the capabilities.
    """
    if not capabilities:
        return HANDSHAKE
    return HANDSHAKE + b" " + json.dumps(capabilities, separators=(",", ":")).encode()


def serve_inverted(
    sock: pynng.Req0, handle: Callable[[bytes], bytes], closing: threading.Event, handshake: bytes = HANDSHAKE
) -> None:
    """Run the plugin end of an inverted REQ/REP channel until ``closing`` is set and the socket closed.

    The host answers our request with a command; we send the result as the
    next request.  When nothing comes within the receive timeout we send
    ``handshake`` again: it keeps the channel alive and tells a host whose
    command got lost to send it again.  ``handle`` must not raise.

    Closing a socket under a blocked call surfaces as various nng errors
    (pynng 0.9 reports ConnectionReset), so the owner sets ``closing`` first
    and any error then means "stop"; other errors are retried.  ``handshake``
    is what is sent as the handshake (``handshake_message``).
    """
    request = handshake
    while not closing.is_set():
        try:
            sock.send(request)
            command = sock.recv()
        except (pynng.Timeout, pynng.BadState):
            request = handshake
            continue
        except pynng.NNGException as err:
            if closing.is_set():
                return
            _log.warning("channel error, handshaking again", extra={"sdk": {"error": str(err)}})
            closing.wait(RETRY_PAUSE_S)
            request = handshake
            continue
        request = handle(command)
