"""Host end of a plugin's control channel.

The plugin holds the REQ end and the host the REP end, so the roles are
inverted: every message the plugin sends (the first ``handshake``, a
keepalive ``handshake``, or the result of a command) is a *request*, and the
host can only speak by *replying* to the latest one.  One reader task owns
the receiving side and tracks whether the host currently holds such a reply
slot; commands wait in a queue until it does.

A ``handshake`` that arrives while a command is in flight means the plugin
gave up waiting and the command was lost: it is sent again.  A ``handshake``
that arrives while nothing is in flight is a keepalive, counted so the
supervisor can tell plugins that send keepalives (eKuiper's Python SDK, ours)
from those that never do (eKuiper's Go SDK).

A handshake may declare capabilities: our sdk sends ``handshake {"batch": 1}``
when the host offered batching (docs/protocol.md, Extensions).  It still
begins with ``h``, so any host takes it for a handshake; ``capabilities``
holds what the current process declared (``{}`` for eKuiper's SDKs).

The socket stays open across plugin process restarts; ``expect_new_process``
marks the boundary.

A control channel belongs to one process group: the one the supervisor
spawned for the plugin (``admit``).  nng tells who dialled an IPC socket
(the option ``ipc:peer-pid``), so a connection from any other process (a
copied plugin with a hard-coded name dialling its neighbour's socket, a
leftover of an earlier run) is closed before it can take a command, and
logged once as ``plugin.control_intruder``.  This needs nothing from the
plugin, so eKuiper-SDK plugins are checked too.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynng
from pynng import _nng

from loader.log import get_logger
from loader.tasks import Backoff, report_failure
from loader.wire.addresses import claim, url
from loader.wire.codec import decode_capabilities
from sdk.protocol.control import encode_command
from sdk.protocol.handshake import is_handshake


class ControlError(Exception):
    """A command could not be completed; the message names plugin and command."""


class CommandFailed(ControlError):
    """The plugin answered a command with an error text."""


class CommandTimeout(ControlError):
    """The plugin did not answer a command in time."""


class ProcessGone(ControlError):
    """The plugin process went away while a command was pending."""


@dataclass
class _Command:
    name: str
    payload: bytes
    done: asyncio.Future[str] = field(repr=False)
    sends: int = 0


class ControlChannel:
    """REP socket listening on ``plugin_<name>.ipc`` for the plugin's whole life."""

    def __init__(self, path: Path, plugin: str) -> None:
        self.path = path
        self.plugin = plugin
        self._socket: pynng.Rep0 | None = None
        self._reader: asyncio.Task[None] | None = None
        self._handshaken = asyncio.Event()
        self._queue: list[_Command] = []
        self._inflight: _Command | None = None
        self._holds_slot = False
        #: monotonic time of the last message from the plugin, any kind.
        self.last_message_at: float = 0.0
        #: keepalive handshakes seen from the current process.
        self.keepalives: int = 0
        #: what the current process declared in its handshake, e.g. ``{"batch": 1}``.
        self.capabilities: dict[str, Any] = {}
        #: the process group allowed on this channel (the plugin process leads it); None: anyone
        #: (between two processes, and for a host that never spawns one itself).
        self._owner: int | None = None
        self._intruders_logged: set[int] = set()

    async def open(self) -> None:
        """Listen before the plugin process starts, so its first dial succeeds."""
        claim(self.path)
        self._socket = pynng.Rep0()
        self._socket.add_pre_pipe_connect_cb(self._screen)
        self._socket.listen(url(self.path))
        self._reader = asyncio.get_running_loop().create_task(self._read_forever(), name=f"control-{self.plugin}")

    def admit(self, pid: int) -> None:
        """From now on only process group ``pid`` (the plugin process just spawned) may be connected."""
        self._owner = pid
        if self._socket is not None:
            for pipe in list(self._socket.pipes):  # whoever slipped in before the pid was known
                self._screen(pipe)

    def _screen(self, pipe: pynng.Pipe) -> None:
        """Close a pipe from a process outside the owner's group (also nng's pre-connect callback)."""
        owner = self._owner
        peer = peer_pid(pipe)
        if owner is None or peer is None or peer_belongs(peer, owner):
            return
        try:
            pipe.close()
        except pynng.NNGException:
            pass  # gone already
        if peer not in self._intruders_logged and len(self._intruders_logged) < 1000:
            self._intruders_logged.add(peer)
            get_logger(plugin=self.plugin).warning(
                "plugin.control_intruder",
                intruder_pid=peer,
                pid=self._owner,
                command=_command_of(peer),
                reason="a process the loader did not start for this plugin dialled its control socket; refused",
            )

    def expect_new_process(self) -> None:
        """Forget the old process: fail what it owed us and wait for a fresh handshake."""
        self._owner = None  # until admit() names the next one
        self._handshaken.clear()
        self._holds_slot = False
        self.keepalives = 0
        self.capabilities = {}
        gone = ProcessGone(f"plugin {self.plugin}: process exited before answering")
        if self._inflight is not None:
            _fail(self._inflight, gone)
            self._inflight = None

    @property
    def handshaken(self) -> bool:
        return self._handshaken.is_set()

    async def wait_handshake(self, timeout: float) -> None:
        """Wait for the first handshake of the current process; asyncio.TimeoutError if none."""
        await asyncio.wait_for(self._handshaken.wait(), timeout)

    async def command(self, name: str, control: dict[str, Any], timeout: float) -> None:
        """Send ``start`` or ``stop`` and wait for ``ok``.

        Raises CommandFailed with the plugin's own error text, CommandTimeout,
        or ProcessGone.
        """
        loop = asyncio.get_running_loop()
        cmd = _Command(name, encode_command(name, control), loop.create_future())
        self._queue.append(cmd)
        await self._send_next()
        try:
            reply = await asyncio.wait_for(asyncio.shield(cmd.done), timeout)
        except TimeoutError:
            self._forget(cmd)
            symbol = control.get("symbolName", "?")
            raise CommandTimeout(f"plugin {self.plugin}: no answer to {name} of {symbol} within {timeout:g}s") from None
        if reply != "ok":
            raise CommandFailed(f"plugin {self.plugin}: {name} of {control.get('symbolName', '?')} failed: {reply}")

    async def close(self) -> None:
        """Stop reading, fail pending commands, close the socket and remove its file."""
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, pynng.exceptions.NNGException):
                pass
            self._reader = None
        closed = ControlError(f"plugin {self.plugin}: control channel closed")
        for cmd in self._queue:
            _fail(cmd, closed)
        self._queue.clear()
        if self._inflight is not None:
            _fail(self._inflight, closed)
            self._inflight = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self.path.unlink(missing_ok=True)

    async def _read_forever(self) -> None:
        """Read until closed.  Nothing a plugin sends may end this task: the
        channel outlives restarts and swaps, so a dead reader would leave every
        later process of the plugin without a handshake."""
        assert self._socket is not None
        backoff = Backoff()
        while True:
            try:
                message = await self._next_message(self._socket)
                self.last_message_at = time.monotonic()
                await self._on_message(message)
            except pynng.exceptions.Closed:
                return
            except pynng.exceptions.NNGException as exc:
                # A failed send or receive must not end the reader: every later
                # command would time out with no trace of why.
                get_logger(plugin=self.plugin).warning("plugin.control_error", error=str(exc))
                self._holds_slot = False
            except Exception as exc:  # a bug or a message no check foresaw: log it, drop it, carry on
                self._holds_slot = False
                await asyncio.sleep(report_failure("control_reader", exc, backoff, plugin=self.plugin))
            else:
                backoff.succeeded()

    async def _next_message(self, sock: pynng.Rep0) -> bytes:
        """The next message, taken without blocking once the socket's receive descriptor says one is there.

        ``arecv`` costs an nng callback thread, a hand-over of the GIL and an
        event-loop wakeup per message: with 200 plugins sending keepalives that
        was most of an idle loader's CPU.  The loop's own selector watches the
        descriptor instead, only while the reader waits.  Raises pynng.Closed
        once the socket is closed.
        """
        while True:
            try:
                message: bytes = sock.recv(block=False)  # pynng is untyped: its messages are bytes
                return message
            except pynng.TryAgain:
                await _readable(sock.recv_fd)

    async def _on_message(self, message: bytes) -> None:
        if is_handshake(message):
            self.capabilities = decode_capabilities(message)
            if self._inflight is not None:
                # The plugin stopped waiting: the command we sent is lost, resend it.
                await self._send(self._inflight)
                return
            if self._handshaken.is_set():
                self.keepalives += 1
            self._handshaken.set()
        elif self._inflight is not None:
            cmd, self._inflight = self._inflight, None
            if not cmd.done.done():
                cmd.done.set_result(message.decode(errors="replace"))
        self._holds_slot = True
        await self._send_next()

    async def _send_next(self) -> None:
        if not self._holds_slot or self._inflight is not None or not self._queue:
            return
        if not self._handshaken.is_set():
            return
        cmd = self._queue.pop(0)
        self._inflight = cmd
        await self._send(cmd)

    async def _send(self, cmd: _Command) -> None:
        assert self._socket is not None
        self._holds_slot = False
        cmd.sends += 1
        await self._socket.asend(cmd.payload)

    def _forget(self, cmd: _Command) -> None:
        if cmd in self._queue:
            self._queue.remove(cmd)
        if self._inflight is cmd:
            # Its answer may still come; it will be treated as a stray result.
            self._inflight = None


async def _readable(fd: int) -> None:
    """Return once ``fd`` is readable; the loop watches it only meanwhile."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def peer_pid(pipe: pynng.Pipe) -> int | None:
    """The pid of the process at the other end of an IPC pipe (nng's ``ipc:peer-pid``), None if unknown."""
    value = _nng.ffi.new("uint64_t *")
    if _nng.lib.nng_pipe_get_uint64(pipe.pipe, b"ipc:peer-pid", value) != 0:
        return None
    return int(value[0])


def peer_belongs(peer: int, owner: int) -> bool:
    """Whether process ``peer`` is in process group ``owner`` (the plugin process and what it forked)."""
    try:
        return os.getpgid(peer) == owner
    except ProcessLookupError:
        return False


def _command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(300).replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _fail(cmd: _Command, error: Exception) -> None:
    if not cmd.done.done():
        cmd.done.set_exception(error)
