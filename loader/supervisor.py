"""Keeping one plugin's process alive.

One ``PluginSupervisor`` per loaded plugin owns, for the plugin's whole life,
its control channel (listening before the first spawn and across every
restart, PROTOCOL.md section 6) and a single run loop task that owns the
process.  Everything that changes the process (a crash, a hang, a swap to a
new version, a stop) goes through that loop, so there is never more than one
process per plugin and no two actors race over it.

The loop: launch (spawn, wait for the handshake, replay running symbols),
watch (process exit, hang, swap or stop request), then restart with
exponential backoff, swap without backoff, or stop.  Backoff resets after a
stable run; too many restarts in a window mark the plugin crash-looping,
which keeps retrying at the capped delay.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from loader.config import LoaderConfig
from loader.diagnose import explain_no_handshake
from loader.log import get_logger
from loader.manifest import PluginSpec
from loader.output import OutputLimiter, OutputTail, pump
from loader.process import describe_exit, plugin_argument, spawn, terminate
from loader.repeats import Repeats
from loader.status import CRASHLOOP, LOADING, RESTARTING, RUNNING, STOPPED, StatusBoard
from loader.wire.addresses import control_path
from loader.wire.codec import declares_batch
from loader.wire.control import CommandFailed, CommandTimeout, ControlChannel, ControlError

HEALTH_CHECK_INTERVAL_S = 0.1


@dataclass
class _Request:
    """A swap or stop asked of the run loop, answered when it is done."""

    kind: str  # "swap" | "stop"
    spec: PluginSpec | None
    done: asyncio.Future[bool]


class PluginSupervisor:
    def __init__(self, spec: PluginSpec, config: LoaderConfig, board: StatusBoard) -> None:
        self.spec = spec
        self.config = config
        self.settings = config.supervisor
        self.board = board
        self.channel = ControlChannel(control_path(config.ipc_dir, spec.name), spec.name)
        self.process: asyncio.subprocess.Process | None = None
        self.tail = OutputTail()
        self.log = get_logger(plugin=spec.name)
        self._symbols: dict[str, dict] = {}
        self._requests: asyncio.Queue[_Request] = asyncio.Queue()
        self._unhealthy: str | None = None
        self._first_launch: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._repeats = Repeats()  # plugin.crashloop: once per interval, with a count
        #: Bumped for every process launched: data channels compare it to tell
        #: that the process they sent a record to is gone.
        self.generation = 0

    @property
    def name(self) -> str:
        return self.spec.name

    # ----------------------------------------------------------------- public

    async def open(self) -> None:
        """Listen on the control channel; OSError if another process holds its socket."""
        await self.channel.open()

    async def start(self) -> bool:
        """Launch the first process; True once running, False if that first launch failed.

        After a failed first launch the loop keeps retrying with backoff.
        """
        self._first_launch = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"supervise-{self.name}")
        return await self._first_launch

    async def swap(self, spec: PluginSpec) -> bool:
        """Replace the process with one of ``spec``; True once the new one is running."""
        return await self._ask("swap", spec)

    async def stop(self) -> None:
        """Stop the process and close the control channel; the supervisor is done after this."""
        if self._task is not None and not self._task.done():
            await self._ask("stop", None)
            await self._task
        await self.channel.close()
        self.board.set_state(self.name, STOPPED, pid=None)

    def mark_unhealthy(self, reason: str) -> None:
        """Called when the plugin fails to answer (e.g. a command timed out): restart it."""
        self._unhealthy = reason

    @property
    def capabilities(self) -> dict:
        """What the current process declared in its handshake (``{}`` for eKuiper SDK plugins)."""
        return self.channel.capabilities

    @property
    def batch_max_records(self) -> int:
        """Most records a batch message to the current process may hold; 0: send no batches.

        Non-zero only when batching is enabled and the process declared it
        understands batches; read per send, since a restart may change it.
        """
        batch = self.config.batch
        return batch.max_records if batch.enabled and declares_batch(self.channel.capabilities) else 0

    @property
    def running(self) -> bool:
        return self.board.ensure(self.name).state == RUNNING

    async def start_symbol(self, key: str, control: dict) -> None:
        """Start a symbol and replay it on every new process until stop_symbol.

        When no process is running now, the symbol starts with the next one.
        """
        self._symbols[key] = control
        if self.running:
            await self._command("start", control)

    async def stop_symbol(self, key: str) -> None:
        control = self._symbols.pop(key, None)
        if control is not None and self.running:
            await self._command("stop", control)

    # --------------------------------------------------------------- run loop

    async def _ask(self, kind: str, spec: PluginSpec | None) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._requests.put(_Request(kind, spec, done))
        return await done

    async def _run(self) -> None:
        consecutive = 0  # restarts since the last stable run: the backoff is derived from it
        crashes: deque[float] = deque()
        pending: _Request | None = None
        while True:
            started = time.monotonic()
            ok = await self._launch()
            self._answer_launch(pending, ok)
            pending = None
            request = await self._watch() if ok else None
            if request is None or request.kind == "stop" or not ok:
                await self._end_process()
            if request is not None and request.kind == "stop":
                request.done.set_result(True)
                return
            if request is not None and request.kind == "swap":
                await self._end_process()
                self._adopt(request)
                pending = request
                continue
            # The process died, hung or never came up: restart with backoff.
            if time.monotonic() - started >= self.settings.stable_after_s:
                consecutive = 0
                crashes.clear()
                self._repeats.clear("crashloop")  # a new crash loop is news again
            backoff = self._backoff(consecutive)
            consecutive += 1
            now = time.monotonic()
            crashes.append(now)
            while crashes and now - crashes[0] > self.settings.crashloop_window_s:
                crashes.popleft()
            state = CRASHLOOP if len(crashes) >= self.settings.crashloop_restarts else RESTARTING
            status = self.board.set_state(self.name, state, pid=None)
            status.restarts += 1
            held_back = self._repeats.check("crashloop") if state == CRASHLOOP else 0
            if held_back is not None:
                event = "plugin.crashloop" if state == CRASHLOOP else "plugin.restarting"
                extra = {"repeated": held_back} if state == CRASHLOOP else {}
                self.log.warning(event, version=self.spec.version, delay_s=round(backoff, 3),
                                 restarts=status.restarts, reason=status.last_error, **extra)
            request = await self._sleep_or_request(backoff)
            if request is not None and request.kind == "stop":
                request.done.set_result(True)
                return
            if request is not None and request.kind == "swap":
                self._adopt(request)
                pending = request
                consecutive = 0
                crashes.clear()

    def _backoff(self, consecutive: int) -> float:
        """Delay before the next restart: doubling from the initial value, capped (current settings)."""
        settings = self.settings
        return min(settings.restart_backoff_initial_s * (2 ** min(consecutive, 32)), settings.restart_backoff_max_s)

    def _adopt(self, request: _Request) -> None:
        assert request.spec is not None
        old = self.spec
        self.spec = request.spec
        self.board.set_state(self.name, LOADING, previous_version=old.version,
                             version=self.spec.version, digest=self.spec.digest, pid=None)

    def _answer_launch(self, request: _Request | None, ok: bool) -> None:
        if self._first_launch is not None and not self._first_launch.done():
            self._first_launch.set_result(ok)
        if request is not None and not request.done.done():
            request.done.set_result(ok)

    async def _sleep_or_request(self, delay: float) -> _Request | None:
        try:
            return await asyncio.wait_for(self._requests.get(), delay)
        except asyncio.TimeoutError:
            return None

    # ---------------------------------------------------------------- launch

    async def _launch(self) -> bool:
        """Spawn, wait for the handshake, replay symbols; True when running."""
        spec = self.spec
        self.board.set_state(self.name, LOADING, version=spec.version, digest=spec.digest, pid=None,
                             symbols={k: spec.symbols(k) for k in ("sources", "sinks", "functions")})
        self.channel.expect_new_process()
        self.generation += 1
        self._unhealthy = None
        self.tail.clear()
        argument = plugin_argument(spec, self.config.ipc_dir, self.settings.keepalive_ms, self.config.batch)
        try:
            self.process = await spawn(spec, argument)
        except OSError as exc:
            return self._launch_failed(f"cannot start {spec.executable}: {exc}; check the executable and its interpreter")
        pid = self.process.pid
        self.channel.admit(pid)
        self.board.set_state(self.name, LOADING, pid=pid)  # the new process's pid, never the old one's
        self.log.info("plugin.spawned", version=spec.version, pid=pid)
        limiter = OutputLimiter()  # one log budget for both streams of this process
        self._pumps = [
            asyncio.create_task(pump(self.process.stdout, self.name, pid, "stdout", self.tail, limiter)),  # type: ignore[arg-type]
            asyncio.create_task(pump(self.process.stderr, self.name, pid, "stderr", self.tail, limiter)),  # type: ignore[arg-type]
        ]
        error = await self._await_handshake()
        if error is not None:
            return self._launch_failed(error)
        if not await self._replay_symbols():
            return False
        self.board.set_state(self.name, RUNNING, pid=pid, last_error=None)
        self.log.info("plugin.running", version=spec.version, pid=pid, capabilities=self.channel.capabilities)
        return True

    async def _await_handshake(self) -> str | None:
        """None once the plugin handshakes, else why it did not."""
        assert self.process is not None
        timeout = self.settings.handshake_timeout_s
        handshake = asyncio.create_task(self.channel.wait_handshake(timeout))
        exited = asyncio.create_task(self.process.wait())
        await asyncio.wait({handshake, exited}, return_when=asyncio.FIRST_COMPLETED)
        if handshake.done() and not handshake.cancelled() and handshake.exception() is None:
            exited.cancel()
            return None
        handshake.cancel()
        if exited.done():
            await self._drain_output()
            returncode = self.process.returncode
            return self._explain(f"process exited before the handshake ({_how(describe_exit(returncode))})",
                                 returncode)
        exited.cancel()
        return self._explain(f"no handshake within {timeout:g}s", None)

    def _explain(self, outcome: str, returncode: int | None) -> str:
        """What the exit code and the output say about a missing handshake (loader/diagnose.py)."""
        return explain_no_handshake(outcome, returncode, self.tail.lines(), self.name,
                                    control_path(self.config.ipc_dir, self.name), self.spec.executable)

    async def _replay_symbols(self) -> bool:
        # Until none is left: a rule may start symbols while this awaits the
        # plugin, and start_symbol leaves them to the replay (not running yet).
        replayed: set[str] = set()
        while pending := [(k, c) for k, c in self._symbols.items() if k not in replayed]:
            key, control = pending[0]
            replayed.add(key)
            try:
                await self.channel.command("start", control, self.settings.command_timeout_s)
            except ControlError as exc:
                self.log.error("plugin.symbol_replay_failed", symbol=control.get("symbolName"), key=key, error=str(exc))
                if not isinstance(exc, CommandFailed):  # the plugin said no: keep the others running
                    return self._launch_failed(str(exc))
        return True

    def _launch_failed(self, error: str) -> bool:
        self.board.set_state(self.name, self.board.ensure(self.name).state, last_error=error)
        self.log.error("plugin.start_failed", version=self.spec.version,
                       pid=self.process.pid if self.process else None, error=error, output_tail=self.tail.lines())
        return False

    # ----------------------------------------------------------------- watch

    async def _watch(self) -> _Request | None:
        """Wait while running; return a request, or None when the process died or hung."""
        assert self.process is not None
        exited = asyncio.create_task(self.process.wait())
        request = asyncio.create_task(self._requests.get())
        health = asyncio.create_task(self._until_unhealthy())
        done, _ = await asyncio.wait({exited, request, health}, return_when=asyncio.FIRST_COMPLETED)
        for task in (exited, request, health):
            if task not in done:
                task.cancel()
        if request in done:
            return request.result()
        if exited in done:
            await self._drain_output()
            how = describe_exit(self.process.returncode)
            error = f"process exited ({_how(how)})"
            self.board.set_state(self.name, RESTARTING, last_error=error, pid=None)
            self.log.error("plugin.exited", version=self.spec.version, pid=self.process.pid,
                           output_tail=self.tail.lines(), **how)
            return None
        reason = health.result()
        self.board.set_state(self.name, RESTARTING, last_error=reason)
        self.log.error("plugin.unhealthy", version=self.spec.version, pid=self.process.pid, reason=reason)
        await self._end_process()
        return None

    async def _until_unhealthy(self) -> str:
        """Return a reason once the plugin is judged hung.

        Silence only counts for plugins seen sending keepalives (eKuiper's Go
        SDK never does); a command that got no answer counts for all.
        """
        hung_after = self.settings.hung_after_s
        while True:
            await asyncio.sleep(HEALTH_CHECK_INTERVAL_S)
            if self._unhealthy is not None:
                return self._unhealthy
            silence = time.monotonic() - self.channel.last_message_at
            if self.channel.keepalives > 0 and silence > hung_after:
                return f"no keepalive for {silence:.1f}s (limit {hung_after:g}s): the process is alive but not answering"

    # ------------------------------------------------------------------- end

    async def _end_process(self) -> None:
        process = self.process
        if process is None:
            return
        killed = await terminate(process, self.settings.stop_grace_s)
        await self._drain_output()
        if killed:
            self.log.warning("plugin.killed", pid=process.pid, reason=f"ignored SIGTERM for {self.settings.stop_grace_s:g}s")
        self.log.info("plugin.stopped", version=self.spec.version, pid=process.pid, **describe_exit(process.returncode))
        self.process = None

    async def _drain_output(self) -> None:
        """Let the output readers reach the end so the last lines are in the tail."""
        if self._pumps:
            await asyncio.wait(self._pumps, timeout=1.0)
            for task in self._pumps:
                task.cancel()
            self._pumps = []

    async def _command(self, name: str, control: dict) -> None:
        try:
            await self.channel.command(name, control, self.settings.command_timeout_s)
        except CommandTimeout as exc:
            self.mark_unhealthy(str(exc))
            raise


def _how(how: dict[str, object]) -> str:
    if "signal" in how:
        return f"killed by {how['signal']}"
    return f"exit code {how.get('exit_code')}"
