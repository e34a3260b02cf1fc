"""nng's SP-over-IPC wire format, and its dialing PUSH end in plain Python sockets.

Both sides send records through a PUSH that dials a PULL listener: the
loader to a sink plugin's data socket, a source plugin to the loader's.
Through pynng each such send costs some 25 to 35 µs of CPU, most of it
handing the message to nng's own threads; the format underneath is simple
and fixed (nng, mangos and eKuiper's SDKs all speak it), and writing it
directly is one ``send`` system call per message on the caller's thread.
The listening ends are the loader's (sdk/protocol/ipc_listen.py); the peers keep
their nng sockets and see an ordinary PUSH.

The mapping, per connection on a Unix stream socket:

- both ends first send an 8-byte greeting ``00 'S' 'P' 00``, their protocol
  number as 16 bits big-endian (PUSH 0x50, PULL 0x51, REQ 0x30, REP 0x31),
  and two zero bytes;
- then each message is one frame: a type byte ``01``, the body's length as 64
  bits big-endian, and the body.  PUSH/PULL adds no header to the body.

What the dialer keeps of nng's PUSH: it redials by itself, backing off from
10 to 200 ms, when nobody listens yet or the connection ended (a plugin
process replaced by its next version listens on the same address); a send
blocks while nobody takes it, which is the back-pressure.  What it adds: a
message is written whole or not at all.  A frame cut short (the caller gave
up, or the connection broke, half-way) is discarded by the receiver when the
connection ends, so the dialer drops the connection then, and a broken one's
message is written again, whole, on the next connection within the same
send.  A message the peer took into its buffers and never read before it
closed is lost, as with nng: acknowledgements are what make delivery sure.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable
from enum import Enum

PROTO_REQ = 0x30
PROTO_REP = 0x31
PROTO_PUSH = 0x50
PROTO_PULL = 0x51
GREETING_LENGTH = 8
FRAME_HEADER_LENGTH = 9  # type byte + 64-bit length
FRAME_TYPE_MESSAGE = 1
#: nng's redial back-off bounds for a dialer whose peer is not there.
REDIAL_MIN_S = 0.01
REDIAL_MAX_S = 0.2
#: Longest a blocked send waits before it asks ``give_up`` again.
SLICE_S = 0.01
#: Least time a new connection's listener is given to greet.
GREETING_WAIT_S = 0.5


def greeting(proto: int) -> bytes:
    """The 8 bytes an SP endpoint of protocol ``proto`` sends first."""
    return b"\x00SP\x00" + proto.to_bytes(2, "big") + b"\x00\x00"


def frame(body: bytes) -> bytes:
    """One message as it goes on the wire: type byte, 64-bit length, body."""
    return FRAME_TYPE_MESSAGE.to_bytes(1, "big") + len(body).to_bytes(8, "big") + body


PUSH_GREETING = greeting(PROTO_PUSH)
PULL_GREETING = greeting(PROTO_PULL)
REQ_GREETING = greeting(PROTO_REQ)


def _never() -> bool:
    return False


def wait_ready(sock: socket.socket, events: int, timeout: float) -> bool:
    """Whether ``sock`` became ready for ``events`` (``select.POLLIN``, ``select.POLLOUT``) within ``timeout``.

    ``poll``, not ``select``: a loader running many rules holds more than
    1024 descriptors, and ``select`` refuses any numbered above that.  A hang-up
    or error counts as ready: the next call on the socket says which.
    """
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(max(0, int(timeout * 1000 + 0.999))))


class Written(Enum):
    """How writing one frame ended (``write_frame``)."""

    WHOLE = "whole"
    #: Not a byte of it was written by the deadline (or when given up): the connection is intact.
    NOTHING = "nothing"
    #: A part of it was written by the deadline: the connection must go, so the receiver discards it.
    CUT = "cut"
    #: The connection broke under the write: the peer did not get it.
    BROKEN = "broken"


def write_frame(sock: socket.socket, whole: bytes, deadline: float, give_up: Callable[[], bool] = _never) -> Written:
    """Write ``whole`` (a frame) on a non-blocking socket, waiting for room in short slices until ``deadline``.

    The caller decides what each outcome means for its message and its
    connection; a frame is never left half-written on a connection that
    stays in use.
    """
    data = memoryview(whole)
    while True:
        try:
            data = data[sock.send(data, socket.MSG_NOSIGNAL) :]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return Written.BROKEN
        if not data:
            return Written.WHOLE
        if give_up() or time.monotonic() >= deadline:
            return Written.CUT if len(data) < len(whole) else Written.NOTHING
        writable = wait_ready(sock, select.POLLOUT, min(SLICE_S, max(0.0, deadline - time.monotonic())))
        if not writable and _peer_left(sock):
            return Written.BROKEN


def _peer_left(sock: socket.socket) -> bool:
    """Whether the peer hung up; data it sent and nobody read yet does not count as hanging up."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _read_greeting(sock: socket.socket, deadline: float, give_up: Callable[[], bool]) -> bytes:
    """The peer's 8 bytes, b"" if it hung up first; raises TimeoutError when none came by ``deadline``."""
    got = b""
    while len(got) < GREETING_LENGTH:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or give_up():
            raise TimeoutError("no greeting from the listener")
        if wait_ready(sock, select.POLLIN, min(remaining, SLICE_S)):
            chunk = sock.recv(GREETING_LENGTH - len(got))
            if not chunk:
                return b""
            got += chunk
    return got


class IpcPushDialer:
    """The PUSH end that dials the PULL listening at ``path``; one thread sends at a time.

    ``connected`` says whether a connection is up now.  ``refused`` counts
    peers dropped for greeting as something other than a PULL, and
    ``last_error`` says why the last dial failed (diagnostics for messages).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.refused = 0
        self.last_error = ""
        self._sock: socket.socket | None = None
        self._closed = False
        self._redial_at = 0.0
        self._backoff = REDIAL_MIN_S

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def fileno(self) -> int:
        """The connection's descriptor, -1 while not connected."""
        return -1 if self._sock is None else self._sock.fileno()

    def dial(self, timeout: float = 0.0) -> bool:
        """Connect now if nobody is connected, waiting up to ``timeout`` for a listener; True once connected."""
        return self._connection(time.monotonic() + timeout, _never) is not None

    def send(self, body: bytes, timeout: float, give_up: Callable[[], bool] = _never) -> bool:
        """Write one message whole; False if it did not go within ``timeout`` seconds or ``give_up()`` turned true.

        False means the peer did not get the message: not a byte of it was
        written, or the part written was cut off with the connection.
        """
        whole = frame(body)
        deadline = time.monotonic() + timeout
        while True:
            sock = self._connection(deadline, give_up)
            if sock is None:
                return False
            written = write_frame(sock, whole, deadline, give_up)
            if written is Written.WHOLE:
                return True
            if written is Written.NOTHING:
                return False
            self._disconnect()  # a cut frame goes with its connection: the receiver discards it
            if written is Written.CUT:
                return False
            # The connection broke under the write: the message goes whole on the next one.

    def close(self) -> None:
        """Drop the connection for good: a later ``send`` or ``dial`` returns False at once."""
        self._closed = True
        self._disconnect()

    def _connection(self, deadline: float, give_up: Callable[[], bool]) -> socket.socket | None:
        """The connection, dialling (and redialling, backing off) until ``deadline``; None if none by then."""
        while self._sock is None:
            if self._closed:
                return None
            now = time.monotonic()
            if now >= self._redial_at:
                self._sock = self._connect(deadline, give_up)
                if self._sock is not None:
                    self._backoff = REDIAL_MIN_S
                    break
                self._redial_at = now + self._backoff
                self._backoff = min(self._backoff * 2, REDIAL_MAX_S)
                now = time.monotonic()
            if give_up() or now >= deadline:
                return None
            time.sleep(max(0.0, min(self._redial_at, deadline, now + SLICE_S) - now))
        return self._sock

    def _connect(self, deadline: float, give_up: Callable[[], bool]) -> socket.socket | None:
        """One dial: connect and exchange greetings; None if nobody listens or the peer is not a PULL.

        The listener greets as it accepts, so its greeting is waited for at
        least ``GREETING_WAIT_S`` even when ``deadline`` is sooner: a peer
        that is merely slow is not hung up on.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.connect(self.path)
            sock.send(PUSH_GREETING, socket.MSG_NOSIGNAL)
            peer = _read_greeting(sock, max(deadline, time.monotonic() + GREETING_WAIT_S), give_up)
        except OSError as exc:
            sock.close()
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        if peer != PULL_GREETING:
            sock.close()
            if peer:
                self.refused += 1
                self.last_error = f"the listener greeted as {peer!r}, not as a PULL"
            else:
                self.last_error = "the listener hung up before its greeting"
            return None
        return sock

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
