"""Keeping one plugin's process alive, and putting a new version on probation.

One ``PluginSupervisor`` per loaded plugin owns, for the plugin's whole life,
its control channel (listening before the first spawn and across every
restart, PROTOCOL.md section 6) and a single run loop task that owns the
process.  Everything that changes the process (a crash, a hang, a swap to a
new version, a stop) goes through that loop, so there is never more than one
process per plugin and no two actors race over it.

The loop: launch (spawn, wait for the handshake, replay running symbols),
probation (the version must stay up for ``updates.probation_s``), watch
(process exit, hang, swap or stop request), then restart with exponential
backoff, swap without backoff, or stop.  A swapped-in version that fails
its launch or its probation is replaced by the last version that passed
probation (its snapshot, loader/plugins/snapshots.py): a rollback.  Backoff resets
after a stable run; too many restarts in a window mark the plugin
crash-looping, which keeps retrying at the capped delay.

States move through ``Lifecycle.move`` (loader/plugins/states.py); processes start
and stop through a ``Runner`` and time comes from a ``Clock``
(loader/plugins/runner.py), so tests drive all of this with fakes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loader.config import LiveConfig, LoaderConfig, SupervisorSettings, live
from loader.log import get_logger
from loader.plugins.diagnose import explain_no_handshake
from loader.plugins.manifest import PluginSpec
from loader.plugins.output import OutputTail
from loader.plugins.process import describe_exit, plugin_argument
from loader.plugins.runner import Clock, MonotonicClock, Process, ProcessRunner, Runner
from loader.plugins.states import Lifecycle
from loader.plugins.status import PluginState, StatusBoard
from loader.repeats import Repeats
from loader.wire.addresses import control_path
from loader.wire.control import CommandFailed, CommandTimeout, ControlChannel, ControlError
from sdk.protocol.handshake import declared_ack_window, declares_batch

#: How long past the hung limit a silence check may fire; checks are timed, not polled.
HUNG_CHECK_SLACK_S = 0.05
S = PluginState


@dataclass
class _Request:
    """A swap or stop asked of the run loop, answered when it is done."""

    kind: str  # "swap" | "stop"
    spec: PluginSpec | None
    done: asyncio.Future[bool]


@dataclass(frozen=True)
class Failure:
    """Why a launch failed or a running process ended."""

    error: str


class RestartPolicy:
    """Backoff and crash-loop detection, decided from failure times alone.

    The delay doubles from ``restart_backoff_initial_s`` per consecutive
    failure, capped at ``restart_backoff_max_s``; a run that lasted
    ``stable_after_s`` starts the count over.  ``crashloop_restarts``
    failures within ``crashloop_window_s`` make it a crash loop.
    """

    def __init__(self) -> None:
        self.consecutive = 0
        self.failures: deque[float] = deque()

    def reset(self) -> None:
        self.consecutive = 0
        self.failures.clear()

    def failed(self, started: float, now: float, settings: SupervisorSettings) -> tuple[float, bool]:
        """(delay before the next start, whether it is a crash loop) for a run from ``started`` to ``now``."""
        if now - started >= settings.stable_after_s:
            self.reset()
        delay = min(
            settings.restart_backoff_initial_s * (2 ** min(self.consecutive, 32)), settings.restart_backoff_max_s
        )
        self.consecutive += 1
        self.failures.append(now)
        while self.failures and now - self.failures[0] > settings.crashloop_window_s:
            self.failures.popleft()
        return delay, len(self.failures) >= settings.crashloop_restarts


class PluginSupervisor:
    def __init__(
        self,
        spec: PluginSpec,
        config: LoaderConfig | LiveConfig,
        board: StatusBoard,
        *,
        lifecycle: Lifecycle | None = None,
        runner: Runner | None = None,
        clock: Clock | None = None,
        channel: ControlChannel | None = None,
        on_good: Callable[[PluginSpec], None] | None = None,
    ) -> None:
        self.spec = spec
        self.live = live(config)
        self.board = board
        self.lifecycle = lifecycle or Lifecycle(spec.name, board)
        self.runner: Runner = runner or ProcessRunner(spec.name)
        self.clock: Clock = clock or MonotonicClock()
        self.channel = channel or ControlChannel(control_path(self.config.ipc_dir, spec.name), spec.name)
        #: Called with a version once it passed probation (the reconciler keeps its snapshot).
        self.on_good = on_good
        self.process: Process | None = None
        self.tail = OutputTail()
        self.log = get_logger(plugin=spec.name)
        self._repeats = Repeats(clock=self.clock.now)  # plugin.crashloop: once per interval, with a count
        #: The last version that passed probation: what a failed swap rolls back to.
        self.good: PluginSpec | None = None
        #: A version that failed and was rolled back, with why; cleared by the next swap.
        self.failed: tuple[PluginSpec, str] | None = None
        self._symbols: dict[str, dict[str, Any]] = {}
        self._requests: asyncio.Queue[_Request] = asyncio.Queue()
        self._unhealthy: str | None = None
        #: Set (thread-safely) by mark_unhealthy: wakes the health watch at once instead of at its next poll.
        self._unhealthy_marked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_launch: asyncio.Future[bool] | None = None
        self._settle_waiters: list[asyncio.Future[bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        #: Bumped for every process launched: data channels compare it to tell
        #: that the process they sent a record to is gone.
        self.generation = 0
        self.restarts = 0

    @property
    def config(self) -> LoaderConfig:
        return self.live.current

    @property
    def settings(self) -> SupervisorSettings:
        return self.live.current.supervisor

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> PluginState:
        return self.lifecycle.state

    # ----------------------------------------------------------------- public

    async def open(self) -> None:
        """Listen on the control channel; OSError if another process holds its socket."""
        await self.channel.open()

    async def start(self) -> bool:
        """Launch the first process; True once it handshook, False if that first launch failed.

        After a failed first launch the loop keeps retrying with backoff.
        The probation goes on after this returns (``settled`` waits for it).
        """
        self._first_launch = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"supervise-{self.name}")
        return await self._first_launch

    async def swap(self, spec: PluginSpec) -> bool:
        """Replace the process with one of ``spec``; True once the new one passed probation.

        False when it failed (the last good version was restored, or there
        was none and it is being restarted) or another request superseded it.
        """
        return await self._ask("swap", spec)

    async def settled(self) -> bool:
        """Wait for the current version's probation: True if it passed, False if it failed."""
        if self.state in (S.RUNNING, S.ROLLED_BACK):
            return self.state == S.RUNNING
        if self.state not in (S.STARTING, S.PROBATION):
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._settle_waiters.append(waiter)
        return await waiter

    async def stop(self) -> None:
        """Stop the process and close the control channel; the supervisor is done after this.

        Safe to call more than once and concurrently: later calls wait for the first.
        """
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop(), name=f"stop-{self.name}")
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        if self._task is not None and not self._task.done():
            await self._ask("stop", None)
            await self._task
        await self.channel.close()
        self.lifecycle.move(S.STOPPED, pid=None)

    def mark_unhealthy(self, reason: str) -> None:
        """Called when the plugin fails to answer (e.g. a command timed out): restart it.

        Data-plane threads call it too, so the watch is woken through the loop.
        """
        self._unhealthy = reason
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._unhealthy_marked.set)

    @property
    def capabilities(self) -> dict[str, Any]:
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
    def ack_window(self) -> int:
        """Most messages a ``requireAck`` sink of the current process may have unacknowledged (1: one).

        The smaller of ``sinks.ack_window`` and what the process declared in its
        handshake (eKuiper SDK plugins declare nothing: 1); read per send, since
        a restart may change it.
        """
        return max(1, min(self.config.sinks.ack_window, declared_ack_window(self.channel.capabilities)))

    @property
    def running(self) -> bool:
        """A process is up and takes commands (on probation, running, or rolled back)."""
        return self.lifecycle.serving

    def accept_folder(self) -> None:
        """The folder holds the running version again: forget a failed one, leave ``rolled_back``."""
        self.failed = None
        if self.state == S.ROLLED_BACK:
            self.lifecycle.move(S.RUNNING, reason="the folder holds the running version again")
        if self.state == S.RUNNING:
            self.lifecycle.publish(last_error=None)
        self.lifecycle.publish(failed_version=None, failed_error=None)

    async def start_symbol(self, key: str, control: dict[str, Any]) -> None:
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
        policy = RestartPolicy()
        pending: _Request | None = None  # the swap whose outcome is not known yet
        rollback = False  # the coming launch restores the last good version
        while True:
            started = self.clock.now()
            outcome = await self._launch(rollback)
            self._answer_first(outcome is None)
            if outcome is None and rollback:
                _answer(pending, False)
                pending = None
                outcome = await self._watch(None)
            elif outcome is None:
                outcome = await self._probation()
                if outcome is None:
                    self._passed(pending)
                    pending = None
                    outcome = await self._watch(None)
            rollback = False
            await self._end_process()
            self._settle(False)
            if isinstance(outcome, _Request):
                _answer(pending, False)  # superseded, or stopping
                pending = None
                if outcome.kind == "stop":
                    outcome.done.set_result(True)
                    return
                pending = self._adopt(outcome)
                policy.reset()
                continue
            assert outcome is not None
            if pending is not None and self.good is not None and self.good.digest != self.spec.digest:
                self._roll_back(outcome.error)
                rollback = True
                continue
            _answer(pending, False)
            pending = None
            request = await self._restart_delay(policy, started, outcome.error)
            if request is not None and request.kind == "stop":
                request.done.set_result(True)
                return
            if request is not None:
                pending = self._adopt(request)
                policy.reset()

    async def _restart_delay(self, policy: RestartPolicy, started: float, error: str) -> _Request | None:
        """Report the restart, wait the backoff; a request arriving meanwhile ends the wait."""
        if self.clock.now() - started >= self.settings.stable_after_s:
            self._repeats.clear("crashloop")  # a new crash loop is news again
        delay, looping = policy.failed(started, self.clock.now(), self.settings)
        state = S.CRASHLOOP if looping else S.RESTARTING
        self.restarts += 1
        self.lifecycle.move(state, reason=error, pid=None, last_error=error, restarts=self.restarts)
        held_back = self._repeats.check("crashloop") if looping else 0
        if held_back is not None:
            extra = {"repeated": held_back} if looping else {}
            self.log.warning(
                "plugin.crashloop" if looping else "plugin.restarting",
                version=self.spec.version,
                delay_s=round(delay, 3),
                restarts=self.restarts,
                reason=error,
                **extra,
            )
        return await self._sleep_or_request(delay)

    async def _probation(self) -> _Request | Failure | None:
        """Watch the new process for ``updates.probation_s``; None if it stayed up."""
        probation_s = self.config.updates.probation_s
        if probation_s <= 0:
            return None
        return await self._watch(probation_s)

    def _passed(self, pending: _Request | None) -> None:
        self.good = self.spec
        self.lifecycle.move(S.RUNNING, last_error=None)
        self.log.info(
            "plugin.running",
            version=self.spec.version,
            pid=self.process.pid if self.process else None,
            capabilities=self.channel.capabilities,
            probation_s=self.config.updates.probation_s,
        )
        if self.on_good is not None:
            self.on_good(self.spec)
        self._settle(True)
        _answer(pending, True)

    def _roll_back(self, error: str) -> None:
        """The new version failed: make the last good one current again (launched next, no backoff)."""
        assert self.good is not None
        failed = self.spec
        self.failed = (failed, error)
        self.spec = self.good
        self.log.error(
            "plugin.rolled_back",
            version=failed.version,
            restored_version=self.good.version,
            failed_digest=failed.digest[:16],
            restored_digest=self.good.digest[:16],
            cause=error,
        )
        self.lifecycle.publish(failed_version=failed.version, failed_error=error)

    def _adopt(self, request: _Request) -> _Request:
        assert request.spec is not None
        old = self.spec
        self.spec = request.spec
        self.failed = None
        self.lifecycle.publish(previous_version=old.version, failed_version=None, failed_error=None)
        return request

    def _answer_first(self, ok: bool) -> None:
        if self._first_launch is not None and not self._first_launch.done():
            self._first_launch.set_result(ok)

    def _settle(self, passed: bool) -> None:
        waiters, self._settle_waiters = self._settle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(passed)

    async def _sleep_or_request(self, delay: float) -> _Request | None:
        request = asyncio.create_task(self._requests.get())
        timer = asyncio.create_task(self.clock.sleep(delay))
        await asyncio.wait({request, timer}, return_when=asyncio.FIRST_COMPLETED)
        timer.cancel()
        if request.done():
            return request.result()
        request.cancel()
        return None

    # ---------------------------------------------------------------- launch

    async def _launch(self, rollback: bool = False) -> Failure | _Request | None:
        """Spawn, wait for the handshake, replay symbols; None when the process is up.

        A request (stop, swap) arriving before the handshake ends the launch.
        """
        spec = self.spec
        self.lifecycle.move(
            S.STARTING,
            reason="rollback" if rollback else None,
            version=spec.version,
            digest=spec.digest,
            pid=None,
            symbols={k: spec.symbols(k) for k in ("sources", "sinks", "functions")},
        )
        self.channel.expect_new_process()
        self.generation += 1
        self._unhealthy = None
        self.tail.clear()
        argument = plugin_argument(spec, self.config.ipc_dir, self.settings.keepalive_ms, self.config.batch)
        try:
            self.process = await self.runner.start(spec, argument, self.tail)
        except OSError as exc:
            return self._launch_failed(
                f"cannot start {spec.executable}: {exc}; check the executable and its interpreter"
            )
        pid = self.process.pid
        self.channel.admit(pid)  # only this process's group may hold the control channel now
        self.lifecycle.publish(pid=pid)  # the new process's pid, never the old one's
        self.log.info("plugin.spawned", version=spec.version, pid=pid)
        outcome = await self._await_handshake()
        if isinstance(outcome, str):
            return self._launch_failed(outcome)
        if outcome is not None:
            return outcome
        failure = await self._replay_symbols()
        if failure is not None:
            return failure
        if rollback:
            assert self.failed is not None
            failed, error = self.failed
            self.lifecycle.move(
                S.ROLLED_BACK,
                reason=f"version {failed.version} failed",
                pid=pid,
                last_error=f"version {failed.version} failed and was rolled back: {error}",
            )
            self.log.info(
                "plugin.running",
                version=spec.version,
                pid=pid,
                capabilities=self.channel.capabilities,
                rolled_back_from=failed.version,
            )
        else:
            self.lifecycle.move(S.PROBATION, pid=pid, last_error=None)
            self.log.info(
                "plugin.on_probation", version=spec.version, pid=pid, probation_s=self.config.updates.probation_s
            )
        return None

    async def _await_handshake(self) -> str | _Request | None:
        """None once the plugin handshakes, a request that came first, else why it did not."""
        assert self.process is not None
        timeout = self.settings.handshake_timeout_s
        handshake = asyncio.create_task(self.channel.wait_handshake(None))  # type: ignore[arg-type]
        exited = asyncio.create_task(self.process.wait())
        timer = asyncio.create_task(self.clock.sleep(timeout))
        request = asyncio.create_task(self._requests.get())
        await asyncio.wait({handshake, exited, timer, request}, return_when=asyncio.FIRST_COMPLETED)
        for task in (handshake, exited, timer, request):
            if not task.done():
                task.cancel()
        if request.done() and not request.cancelled():
            return request.result()
        if handshake.done() and not handshake.cancelled() and handshake.exception() is None:
            return None
        if exited.done():
            await self.runner.drain(self.process)
            returncode = self.process.returncode
            return self._explain(f"process exited before the handshake ({_how(describe_exit(returncode))})", returncode)
        return self._explain(f"no handshake within {timeout:g}s", None)

    def _explain(self, outcome: str, returncode: int | None) -> str:
        """What the exit code and the output say about a missing handshake (loader/plugins/diagnose.py)."""
        return explain_no_handshake(
            outcome,
            returncode,
            self.tail.lines(),
            self.name,
            control_path(self.config.ipc_dir, self.name),
            self.spec.executable,
        )

    async def _replay_symbols(self) -> Failure | None:
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
        return None

    def _launch_failed(self, error: str) -> Failure:
        self.lifecycle.publish(last_error=error)
        self.log.error(
            "plugin.start_failed",
            version=self.spec.version,
            pid=self.process.pid if self.process else None,
            error=error,
            output_tail=self.tail.lines(),
        )
        return Failure(error)

    # ----------------------------------------------------------------- watch

    async def _watch(self, limit: float | None) -> _Request | Failure | None:
        """Wait while the process runs: a request, a Failure (exited or hung), or None after ``limit`` seconds."""
        assert self.process is not None
        exited = asyncio.create_task(self.process.wait())
        request = asyncio.create_task(self._requests.get())
        health = asyncio.create_task(self._until_unhealthy())
        tasks = {exited, request, health}
        if limit is not None:
            tasks.add(asyncio.create_task(self.clock.sleep(limit)))
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if not task.done():
                task.cancel()
        if request.done() and not request.cancelled():
            return request.result()
        if exited.done():
            await self.runner.drain(self.process)
            how = describe_exit(self.process.returncode)
            self.log.error(
                "plugin.exited", version=self.spec.version, pid=self.process.pid, output_tail=self.tail.lines(), **how
            )
            return Failure(f"process exited ({_how(how)})")
        if health.done():
            reason = health.result()
            self.log.error("plugin.unhealthy", version=self.spec.version, pid=self.process.pid, reason=reason)
            return Failure(reason)
        return None

    async def _until_unhealthy(self) -> str:
        """Return a reason once the plugin is judged hung.

        Silence only counts for plugins seen sending keepalives (eKuiper's Go
        SDK never does); a command that got no answer counts for all.  Nothing
        polls: the watch sleeps until the silence could first pass the limit,
        or until ``mark_unhealthy`` wakes it, so an idle plugin costs a wakeup
        per keepalive period, not ten a second.
        """
        self._loop = asyncio.get_running_loop()
        hung_after = self.settings.hung_after_s
        while True:
            self._unhealthy_marked.clear()
            if self._unhealthy is not None:
                return self._unhealthy
            wait = hung_after
            if self.channel.keepalives > 0:
                silence = self.clock.now() - self.channel.last_message_at
                if silence > hung_after:
                    return (
                        f"no keepalive for {silence:.1f}s (limit {hung_after:g}s): "
                        "the process is alive but not answering"
                    )
                wait = hung_after - silence
            await self._sleep_unless_marked(wait + HUNG_CHECK_SLACK_S)

    async def _sleep_unless_marked(self, seconds: float) -> None:
        sleep = asyncio.ensure_future(self.clock.sleep(seconds))
        marked = asyncio.ensure_future(self._unhealthy_marked.wait())
        try:
            await asyncio.wait({sleep, marked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            marked.cancel()

    # ------------------------------------------------------------------- end

    async def _end_process(self) -> None:
        process = self.process
        if process is None:
            return
        killed = await self.runner.stop(process, self.settings.stop_grace_s)
        if killed:
            self.log.warning(
                "plugin.killed", pid=process.pid, reason=f"ignored SIGTERM for {self.settings.stop_grace_s:g}s"
            )
        self.log.info("plugin.stopped", version=self.spec.version, pid=process.pid, **describe_exit(process.returncode))
        self.process = None

    async def _command(self, name: str, control: dict[str, Any]) -> None:
        try:
            await self.channel.command(name, control, self.settings.command_timeout_s)
        except CommandTimeout as exc:
            self.mark_unhealthy(str(exc))
            raise


def _answer(request: _Request | None, ok: bool) -> None:
    if request is not None and not request.done.done():
        request.done.set_result(ok)


def _how(how: dict[str, object]) -> str:
    if "signal" in how:
        return f"killed by {how['signal']}"
    return f"exit code {how.get('exit_code')}"
