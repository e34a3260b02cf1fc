"""The listening ends of nng's wire format over IPC (PULL and REP), in plain Python sockets.

The loader listens with them for a source's records, a sink's acks and a
function's calls; the sdk for the messages of a sink.  Why not pynng: a
record cost its receiver about 33 µs of CPU through pynng, most of it on
nng's own threads (each message is an aio completed on a task queue that
then wakes the receiving thread), more than the rest of the record's trip
through a rule; a function call paid the same twice per round trip.  The
wire format underneath is simple and fixed (the SP-over-IPC mapping that
nng, mangos and eKuiper's SDKs all speak; sdk/protocol/ipc_wire.py has it,
with the dialing PUSH), and reading it directly takes whatever the peer has
written so far in one ``recv`` call, on the thread that wants it: under
load, many records per system call instead of several thread wake-ups per
record.  The peers may be nng sockets (eKuiper's Python and Go SDKs, or its
host dialing a sink) and see an ordinary one.

A dialer waits for the greeting before its dial returns (eKuiper's SDK dials
while it handles ``start``), but the receiving thread may not be
receiving then (it starts once ``start`` was answered, or waits on a full
rule buffer).  So a small thread per listener accepts and greets at once and
hands the connection to the receiving side, waking a receive in progress.
It blocks in ``accept`` and costs nothing while nobody dials.

A peer that greets with anything else, or sends a frame of another type, is
disconnected; the others are not affected.  Back-pressure is the socket's:
nothing is read while the caller does not ask, so the peer's sends block in
its kernel buffer and then in nng, as with an nng socket.

One thread uses a listener at a time (the loader's channel use lock, the
sdk's one receiving thread per sink); ``close`` is called by that thread,
or once it has ended.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from collections import deque
from pathlib import Path

from sdk.protocol.ipc_wire import (
    FRAME_HEADER_LENGTH,
    FRAME_TYPE_MESSAGE,
    GREETING_LENGTH,
    PROTO_PULL,
    PROTO_PUSH,
    PROTO_REP,
    PROTO_REQ,
    Written,
    frame,
    greeting,
    write_frame,
)

#: Bytes asked of a connection per read: a few thousand small records, or a slice of a big one.
READ_SIZE = 256 * 1024
BACKLOG = 16
#: How long ``close`` waits for the accepting thread to leave ``accept``.
ACCEPTOR_JOIN_S = 2.0
#: Pause of the accepting thread after a failed ``accept`` (out of descriptors: the dialer retries).
ACCEPT_RETRY_S = 0.05


#: A request id has its top bit set; a reply carries it back (nng's REQ drops replies to older requests).
REQUEST_ID_LENGTH = 4
#: Most hops a request's backtrace may hold (nng's limit; directly connected peers use one).
MAX_HOPS = 8


def is_live_socket(path: str | os.PathLike[str]) -> bool:
    """Whether some process listens on the Unix socket at ``path``.

    The probe does not block: a listener whose backlog is full is busy, not
    gone, and a blocking connect would wait for it.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(os.fspath(path))
        return True
    except (BlockingIOError, InterruptedError):
        return True  # a full backlog: somebody listens
    except OSError:
        return False
    finally:
        probe.close()


class _Peer:
    """One connected dialer: what it sent that does not make a whole frame yet."""

    __slots__ = ("sock", "pending", "needed", "greeted")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        #: How long ``pending`` must grow before it holds something whole (a big record comes in many reads).
        self.needed = GREETING_LENGTH
        self.greeted = False


class IpcListener:
    """Accepts dialers of protocol ``peer_proto`` on ``path`` and takes in their messages, each peer's in order."""

    def __init__(self, path: Path, own_proto: int, peer_proto: int) -> None:
        self.path = path
        self._own_greeting = greeting(own_proto)
        self._peer_greeting = greeting(peer_proto)
        #: Peers disconnected for a wrong greeting or frame (a diagnostic; they may dial again).
        self.refused = 0
        #: Messages received and not handed out yet, with the peer that sent each.
        self._ready: deque[tuple[_Peer, bytes]] = deque()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(os.fspath(path))
            self._listener.listen(BACKLOG)
            #: Which file is ours: ``close`` removes the socket file only if nobody replaced it meanwhile.
            self._inode = os.stat(path).st_ino
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
        """The next message's body, waiting at most ``timeout`` seconds for one; None if none came."""
        ready, take = self._ready, self._take
        deadline = time.monotonic() + timeout
        while True:
            while ready:
                body = take(*ready.popleft())
                if body is not None:
                    return body
            self._poll(max(0.0, deadline - time.monotonic()))
            if not ready and time.monotonic() >= deadline:
                return None

    def recv_nowait(self) -> bytes | None:
        """A message already received or waiting in a connection, without blocking; None if there is none."""
        return self.recv(0.0)

    def _take(self, peer: _Peer, message: bytes) -> bytes | None:
        """What ``recv`` hands out for one message of ``peer``; None to skip a malformed one."""
        return message

    def close(self) -> None:
        """Remove the socket file, stop accepting and disconnect every peer.

        The file goes first, while the address is still ours: a process
        taking the address over (a plugin's next version) waits as long as we
        listen, and must not lose its own file to our removal afterwards.
        """
        self._remove_file()
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

    def _remove_file(self) -> None:
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass  # gone already

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
                sock.sendall(self._own_greeting)
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
            if data[:GREETING_LENGTH] != self._peer_greeting:
                self._refuse(peer)
                return
            peer.greeted = True
            offset = GREETING_LENGTH
        offset, peer.needed = self._frames(peer, data, offset)
        if offset < 0:
            self._refuse(peer)
        elif offset < len(data):
            peer.pending += data[offset:]

    def _frames(self, peer: _Peer, data: bytes, offset: int) -> tuple[int, int]:
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
            ready.append((peer, data[start:stop]))
            offset = stop
        return offset, FRAME_HEADER_LENGTH

    def _refuse(self, peer: _Peer) -> None:
        self.refused += 1
        self._drop(peer)

    def _drop(self, peer: _Peer) -> None:
        self._selector.unregister(peer.sock)
        peer.sock.close()


class IpcPullListener(IpcListener):
    """The PULL end: messages of every PUSH dialer, each one's in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, PROTO_PULL, PROTO_PUSH)


class IpcRepListener(IpcListener):
    """The REP end: ``recv`` a request (its body), ``send`` the reply to the latest one, as nng's REP does.

    A reply goes to the peer and request id of the request received last;
    if that peer is gone meanwhile, the reply is dropped, as nng drops it.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, PROTO_REP, PROTO_REQ)
        self._requester: _Peer | None = None
        self._request_id = b""

    def send(self, payload: bytes, timeout: float) -> bool:
        """Reply to the latest request; False if not a byte could be written within ``timeout`` seconds.

        Once a reply has started it is written whole (a frame cut short would
        garble the connection), or the connection is dropped if the peer stops
        reading for ``timeout``; the plugin's REQ then dials again and repeats
        its request.  Raises RuntimeError when there is no request to reply to.
        """
        peer = self._requester
        if peer is None:
            raise RuntimeError("no request to reply to")
        self._requester = None
        written = write_frame(peer.sock, frame(self._request_id + payload), time.monotonic() + timeout)
        if written is Written.NOTHING:
            self._requester = peer  # nothing written: the caller may try again
            return False
        if written is not Written.WHOLE:
            self._forget(peer)  # gone, or cut off: the reply is dropped, as nng drops it
        return True

    def _take(self, peer: _Peer, message: bytes) -> bytes | None:
        """Split the backtrace (request id) off a request and remember where the reply goes; None if malformed."""
        for hop in range(1, MAX_HOPS + 1):
            end = hop * REQUEST_ID_LENGTH
            if len(message) < end:
                return None
            if message[end - REQUEST_ID_LENGTH] & 0x80:
                self._requester, self._request_id = peer, message[:end]
                return message[end:]
        return None

    def _forget(self, peer: _Peer) -> None:
        if peer.sock.fileno() != -1:
            self._drop(peer)
