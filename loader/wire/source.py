"""Host end of a source data channel: the records one running source instance emits.

The host PULL socket *listens* on ``{ruleId}_{opId}_{instanceId}.ipc`` and the
plugin's PUSH dials it.  Listening on the host side is what lets the channel
outlive the plugin process: when a plugin is restarted, its new process dials
the same address and records keep arriving on the same socket, so the rule
reading it never notices more than a gap.  It must be listening before the
``start`` command is sent, because eKuiper's SDK dials synchronously while
handling ``start`` and fails the command if nobody listens.

The host end reads the nng wire format itself (sdk/protocol/ipc_listen.py says
why): one read of the socket takes everything the plugin has written so far,
and ``recv`` hands out one record at a time from it, one ``json.loads`` per
message.  A batch
message (batching extension, sent only by sdk plugins that were offered it)
decodes into several items, in order; items not yet returned wait in a small
queue, so ``recv`` and ``recv_batch`` hand out records, never messages.

Receives wait in short slices under the channel's use lock, so ``close``
from another thread ends a blocked receive without closing the socket under
it (loader/wire/exclusive.py says why that matters for nng; for a plain
socket it keeps a descriptor number from being reused under a wait).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from loader.wire.addresses import data_path
from loader.wire.codec import (
    DataChannelClosed,
    DataChannelError,
    DataChannelTimeout,
    SourceItem,
    decode_source_items,
)
from loader.wire.exclusive import SLICE_S, UseLock
from sdk.protocol.ipc_listen import IpcPullListener


class SourceTimeout(DataChannelTimeout):
    """No record arrived within the timeout."""


class SourceChannel:
    """PULL socket for one source instance; stays open across plugin restarts."""

    def __init__(self, path: Path, plugin: str, symbol: str) -> None:
        self.path = path
        self.plugin = plugin
        self.symbol = symbol
        self._socket: IpcPullListener | None = None
        self._use = UseLock()
        #: Items of a batch message not handed out yet.
        self._pending: deque[SourceItem] = deque()
        #: Bytes received so far: what a batch of records weighs, for rule buffers bounded in bytes.
        self.received_bytes = 0

    @classmethod
    def for_instance(
        cls, ipc_dir: Path, plugin: str, symbol: str, rule_id: str, op_id: str, instance_id: int
    ) -> SourceChannel:
        """The channel at the address the protocol assigns to a rule's source instance."""
        return cls(data_path(ipc_dir, rule_id, op_id, instance_id), plugin, symbol)

    def open(self) -> None:
        """Listen; call before sending ``start`` so the plugin's first dial succeeds."""
        if self._socket is not None:
            return
        self.path.unlink(missing_ok=True)
        try:
            sock = IpcPullListener(self.path)
        except OSError as exc:
            raise DataChannelError(f"{self._who()}: cannot listen on {self.path}: {exc}") from exc
        self._use.reopen()
        self._socket = sock

    def recv(self, timeout: float | None = None) -> SourceItem:
        """Block until the next message; a record, or an error the source reported.

        Raises SourceTimeout after ``timeout`` seconds (None waits forever) and
        DataChannelClosed when the channel is closed meanwhile.
        """
        if self._pending:
            return self._pending.popleft()
        items = decode_source_items(self.recv_raw(timeout))
        self._pending.extend(items[1:])
        return items[0]

    def recv_raw(self, timeout: float | None = None) -> bytes:
        """The next message undecoded, for callers that forward bytes as they are.

        A batch message comes out whole; items already queued by ``recv`` are skipped.
        """
        with self._use.lock:
            data = self._wait(self._require_socket(), timeout)
        self.received_bytes += len(data)
        return data

    def recv_batch(self, max_items: int, timeout: float | None = None, max_bytes: int = 0) -> list[SourceItem]:
        """Wait for one item, then take whatever else is already queued, up to ``max_items``
        (and, when ``max_bytes`` is set, no further message once that many bytes were received).

        Lets a consumer amortise its per-wakeup costs (locks, queue puts) over
        everything that arrived while it was busy, without waiting any longer.
        Items of a batch message beyond ``max_items`` stay queued for the next call.
        """
        pending = self._pending
        with self._use.lock:
            if pending:
                items = [pending.popleft() for _ in range(min(max_items, len(pending)))]
            else:
                data = self._wait(self._require_socket(), timeout)
                self.received_bytes += len(data)
                items = decode_source_items(data)
            self._take_queued(items, max_items, max_bytes)
        if len(items) > max_items:
            pending.extend(items[max_items:])
            del items[max_items:]
        return items

    def _take_queued(self, items: list[SourceItem], max_items: int, max_bytes: int) -> None:
        """Append what is already queued, without waiting; the caller holds the use lock."""
        sock = self._socket
        limit = self.received_bytes + max_bytes if max_bytes else None
        while sock is not None and len(items) < max_items and (limit is None or self.received_bytes < limit):
            data = sock.recv_nowait()
            if data is None:
                return
            self.received_bytes += len(data)
            items.extend(decode_source_items(data))

    def __iter__(self) -> Iterator[SourceItem]:
        """Every message until the channel is closed."""
        while True:
            try:
                yield self.recv()
            except DataChannelClosed:
                return

    def close(self) -> None:
        """End any blocked receive (it raises DataChannelClosed), close the socket and remove its file."""
        sock, self._socket = self._socket, None
        if sock is not None:
            self._use.close(sock.close, f"source-{self.path.name}")
        self._pending.clear()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> SourceChannel:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_socket(self) -> IpcPullListener:
        if self._socket is None:
            raise DataChannelClosed(f"{self._who()}: source channel is not open")
        return self._socket

    def _wait(self, sock: IpcPullListener, timeout: float | None) -> bytes:
        """One message, waiting in slices until ``timeout`` (None: forever) or ``close``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._use.closing:
                raise DataChannelClosed(f"{self._who()}: source channel closed")
            slice_s = SLICE_S if deadline is None else min(SLICE_S, max(0.0, deadline - time.monotonic()))
            message = sock.recv(slice_s)
            if message is not None:
                return message
            if deadline is not None and time.monotonic() >= deadline:
                raise SourceTimeout(f"{self._who()}: no record within {timeout:g}s")

    def _who(self) -> str:
        return f"plugin {self.plugin}: source {self.symbol}"
