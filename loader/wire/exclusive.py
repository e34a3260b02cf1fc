"""Closing a socket that other threads use, without ever closing it under them.

nng can abort the whole process (``panic: pthread_mutex_lock: Invalid
argument``) when a socket is closed while another thread is inside a send or
receive on it (nng issues 2110 and 2238).  A loader that dies whenever a rule
is deleted under load is worse than any delay, so the data channels never
rely on "close wakes the blocked call":

- every send and receive runs while holding the channel's use lock, and
  blocks in short slices (``SLICE_S``), checking between slices whether the
  channel is closing;
- ``close`` first marks the channel closing, then takes the use lock, which
  the thread inside a call gives up within one slice, and only then closes
  the socket.

So a blocked call still ends promptly with DataChannelClosed, and the socket
is closed by whoever holds the lock, never while another thread is in nng.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from loader.log import get_logger

#: Longest one blocking nng call lasts; what ``close`` waits for a call in progress to notice.
SLICE_S = 0.1
SLICE_MS = int(SLICE_S * 1000)
#: How long ``close`` waits for the use lock before leaving the closing to a helper thread.
CLOSE_WAIT_S = 2.0


class UseLock:
    """The lock a channel's socket calls hold, and the flag that asks them to leave."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Set by ``close``: a call waiting in slices gives up at the next one.
        self.closing = False

    def reopen(self) -> None:
        """A closed channel that is opened again takes calls again."""
        self.closing = False

    def close(self, close_socket: Callable[[], None], who: str) -> None:
        """Ask calls in progress to leave, then run ``close_socket`` holding the lock.

        Normally that takes at most one slice.  If a call holds the lock for
        longer (a bug: every call waits in slices), the socket is closed by a
        helper thread once the call returns, instead of under it; ``close``
        itself does not wait longer than ``CLOSE_WAIT_S``.
        """
        self.closing = True
        if self.lock.acquire(timeout=CLOSE_WAIT_S):
            try:
                close_socket()
            finally:
                self.lock.release()
            return
        get_logger().warning(
            "channel.close_deferred", channel=who, reason=f"a call still used the socket after {CLOSE_WAIT_S:g}s"
        )

        def close_later() -> None:
            with self.lock:
                close_socket()

        threading.Thread(target=close_later, name=f"close-{who}", daemon=True).start()
