"""The listening PULL end of an nng pipeline over IPC, in plain Python sockets.

Why not pynng here: a source record costs the host about 33 µs of CPU when
received through pynng, most of it on nng's own threads (each message is an
aio completed on a task queue that then wakes the receiving thread), which is
more than the rest of the record's trip through a rule.  The wire format
underneath is simple and fixed (the SP-over-IPC mapping that nng, mangos and
eKuiper's SDKs all speak), and reading it directly takes whatever the peer
has written so far in one ``recv`` call: under load, many records per system
call instead of several thread wake-ups per record.  The plugins keep using
nng's PUSH (our ``sdk``, eKuiper's Python and Go SDKs) and see an ordinary
PULL peer.

The mapping, per connection on a Unix stream socket:

- both ends first send an 8-byte greeting ``00 'S' 'P' 00``, their protocol
  number as 16 bits big-endian (PUSH 0x50, PULL 0x51), and two zero bytes;
- then each message is one frame: a type byte ``01``, the body's length as 64
  bits big-endian, and the body.  PUSH/PULL adds no header to the body.

A dialer waits for the greeting before its dial returns (eKuiper's SDK dials
while it handles ``start``), but the host's receiving thread starts only once
``start`` was answered, and may be held up by a full rule buffer.  So a small
thread per listener accepts and greets at once, whoever is receiving, and
hands the connection to the receiving side, waking a receive in progress.  It
blocks in ``accept`` and costs nothing while nobody dials.

A peer that greets with anything else, or sends a frame of another type, is
disconnected; the others are not affected.  Back-pressure is the socket's:
nothing is read while the caller does not ask, so the peer's sends block in
its kernel buffer and then in nng, as with an nng PULL.

One thread receives at a time (the channel's use lock sees to that); ``close``
is called by the holder of that lock.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from collections import deque
from pathlib import Path

PROTO_PUSH = 0x50
PROTO_PULL = 0x51
GREETING_LENGTH = 8
FRAME_HEADER_LENGTH = 9  # type byte + 64-bit length
FRAME_TYPE_MESSAGE = 1
#: Bytes asked of a connection per read: a few thousand small records, or a slice of a big one.
READ_SIZE = 256 * 1024
BACKLOG = 16
#: How long ``close`` waits for the accepting thread to leave ``accept``.
ACCEPTOR_JOIN_S = 2.0
#: Pause of the accepting thread after a failed ``accept`` (out of descriptors: the dialer retries).
ACCEPT_RETRY_S = 0.05


def greeting(proto: int) -> bytes:
    """The 8 bytes an SP endpoint of protocol ``proto`` sends first."""
    return b"\x00SP\x00" + proto.to_bytes(2, "big") + b"\x00\x00"


PULL_GREETING = greeting(PROTO_PULL)
PUSH_GREETING = greeting(PROTO_PUSH)


class _Peer:
    """One connected PUSH: what it sent that does not make a whole frame yet."""

    __slots__ = ("sock", "pending", "needed", "greeted")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        #: How long ``pending`` must grow before it holds something whole (a big record comes in many reads).
        self.needed = GREETING_LENGTH
        self.greeted = False


class IpcPullListener:
    """Accepts PUSH dialers on ``path`` and hands out their messages, each peer's in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Peers disconnected for a wrong greeting or frame (a diagnostic; they may dial again).
        self.refused = 0
        self._ready: deque[bytes] = deque()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(os.fspath(path))
            self._listener.listen(BACKLOG)
        except OSError:
            self._listener.close()
            raise
        self._selector = selectors.DefaultSelector()
        # The accepting thread hands connections over in ``_incoming`` and wakes the receiver through ``_wake``.
        self._wake, self._waker = socket.socketpair()
        self._wake.setblocking(False)
        self._waker.setblocking(False)
        self._selector.register(self._wake, selectors.EVENT_READ, None)
        self._incoming: list[socket.socket] = []
        self._handover = threading.Lock()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept_forever, name=f"accept-{path.name}", daemon=True)
        self._acceptor.start()

    def recv(self, timeout: float) -> bytes | None:
        """The next message, waiting at most ``timeout`` seconds for one; None if none came."""
        ready = self._ready
        if ready:
            return ready.popleft()
        deadline = time.monotonic() + timeout
        while True:
            self._poll(max(0.0, deadline - time.monotonic()))
            if ready:
                return ready.popleft()
            if time.monotonic() >= deadline:
                return None

    def recv_nowait(self) -> bytes | None:
        """A message already received or waiting in a connection, without blocking; None if there is none."""
        if not self._ready:
            self._poll(0.0)
        return self._ready.popleft() if self._ready else None

    def close(self) -> None:
        """Stop accepting and disconnect every peer; the socket file is the caller's to remove."""
        with self._handover:
            self._closed = True
            incoming, self._incoming = self._incoming, []
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread out of accept()
        except OSError:
            pass
        self._acceptor.join(ACCEPTOR_JOIN_S)
        self._listener.close()
        for sock in incoming:
            sock.close()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]  # every registered object is a socket
        self._selector.close()
        self._waker.close()
        self._ready.clear()

    def _accept_forever(self) -> None:
        """On its own thread: accept and greet each dialer at once, hand it to the receiving side."""
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(ACCEPT_RETRY_S)
                continue
            try:
                sock.sendall(PULL_GREETING)
                sock.setblocking(False)
            except OSError:
                sock.close()
                continue
            with self._handover:
                if self._closed:
                    sock.close()
                    return
                self._incoming.append(sock)
            try:
                self._waker.send(b"\0")
            except OSError:
                pass  # full: wake-ups are pending anyway; or closed meanwhile

    def _poll(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            peer: _Peer | None = key.data
            if peer is None:
                self._take_incoming()
            else:
                self._read(peer)

    def _take_incoming(self) -> None:
        try:
            while self._wake.recv(4096):
                pass
        except OSError:
            pass  # drained
        with self._handover:
            incoming, self._incoming = self._incoming, []
        for sock in incoming:
            self._selector.register(sock, selectors.EVENT_READ, _Peer(sock))

    def _read(self, peer: _Peer) -> None:
        try:
            data = peer.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(peer)
            return
        if peer.pending:
            peer.pending += data
            if len(peer.pending) < peer.needed:
                return
            data = bytes(peer.pending)
            peer.pending.clear()
        offset = 0
        if not peer.greeted:
            if len(data) < GREETING_LENGTH:
                peer.pending += data
                return
            if data[:GREETING_LENGTH] != PUSH_GREETING:
                self._refuse(peer)
                return
            peer.greeted = True
            offset = GREETING_LENGTH
        offset, peer.needed = self._frames(data, offset)
        if offset < 0:
            self._refuse(peer)
        elif offset < len(data):
            peer.pending += data[offset:]

    def _frames(self, data: bytes, offset: int) -> tuple[int, int]:
        """Queue every whole frame of ``data`` from ``offset``.

        Returns where the rest starts (-1 for a bad frame) and how many bytes
        from there make the next whole frame (a header's length while even
        the header is incomplete).
        """
        end = len(data)
        ready = self._ready
        while end - offset >= FRAME_HEADER_LENGTH:
            if data[offset] != FRAME_TYPE_MESSAGE:
                return -1, 0
            start = offset + FRAME_HEADER_LENGTH
            stop = start + int.from_bytes(data[offset + 1 : start], "big")
            if stop > end:
                return offset, stop - offset
            ready.append(data[start:stop])
            offset = stop
        return offset, FRAME_HEADER_LENGTH

    def _refuse(self, peer: _Peer) -> None:
        self.refused += 1
        self._drop(peer)

    def _drop(self, peer: _Peer) -> None:
        self._selector.unregister(peer.sock)
        peer.sock.close()
