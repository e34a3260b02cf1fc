"""A fake clock, runner and control channel for driving a PluginSupervisor in milliseconds.

Time only moves when a test calls ``FakeClock.advance``; processes only exit,
handshake or hang when the test (or the plan given to the runner) says so.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from loader.config import LoaderConfig, SupervisorSettings, UpdateSettings
from loader.plugins.manifest import PluginSpec
from loader.plugins.output import OutputTail


async def settle(rounds: int = 30) -> None:
    """Let every ready task run until nothing moves any more (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        #: How many sleeps were asked for: what a poll would show up in.
        self.sleeps = 0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order and letting them react."""
        target = self.t + seconds
        while True:
            await settle()
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            deadline, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, deadline)
            future.set_result(None)
        self.t = target
        await settle()


@dataclass
class Plan:
    """How a version behaves when started."""

    handshake: bool = True
    #: Exit this long (fake seconds) after the handshake (or the start, without one).
    exit_after_s: float | None = None
    exit_code: int = 1
    keepalives: bool = False
    start_error: str | None = None


class FakeProcess:
    _pids = itertools.count(1000)

    def __init__(self, version: str) -> None:
        self.pid = next(self._pids)
        self.version = version
        self.returncode: int | None = None
        self._ended = asyncio.Event()

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._ended.set()

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode


class FakeChannel:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._handshaken = asyncio.Event()
        self.keepalives = 0
        self.last_message_at = 0.0
        self.capabilities: dict = {}
        self.commands: list[tuple[str, str]] = []
        self.closed = False

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    def expect_new_process(self) -> None:
        self._handshaken.clear()
        self.keepalives = 0
        self.owner: int | None = None

    def admit(self, pid: int) -> None:
        self.owner = pid

    def handshake(self, keepalives: bool) -> None:
        self.last_message_at = self.clock.now()
        self.keepalives = 1 if keepalives else 0
        self._handshaken.set()

    async def wait_handshake(self, timeout: float | None) -> None:
        await asyncio.wait_for(self._handshaken.wait(), timeout)

    async def command(self, name: str, control: dict, timeout: float) -> None:
        self.commands.append((name, control.get("symbolName", "?")))


@dataclass
class FakeRunner:
    clock: FakeClock
    channel: FakeChannel
    plans: dict[str, Plan] = field(default_factory=dict)
    started: list[tuple[float, FakeProcess]] = field(default_factory=list)
    stopped: list[FakeProcess] = field(default_factory=list)
    _timers: list[asyncio.Task] = field(default_factory=list)

    async def start(self, spec: PluginSpec, argument: str, tail: OutputTail) -> FakeProcess:
        plan = self.plans.get(spec.version, Plan())
        if plan.start_error:
            raise OSError(plan.start_error)
        process = FakeProcess(spec.version)
        self.started.append((self.clock.now(), process))
        if plan.handshake:
            self.channel.handshake(plan.keepalives)
        if plan.exit_after_s is not None:
            self._timers.append(asyncio.create_task(self._exit_later(process, plan)))
        return process

    async def _exit_later(self, process: FakeProcess, plan: Plan) -> None:
        await self.clock.sleep(plan.exit_after_s or 0.0)
        process.exit(plan.exit_code)

    async def stop(self, process: FakeProcess, grace_s: float) -> bool:
        self.stopped.append(process)
        process.exit(-15)
        return False

    async def drain(self, process: FakeProcess) -> None:
        pass

    def versions(self) -> list[str]:
        return [p.version for _, p in self.started]

    def alive(self) -> list[FakeProcess]:
        return [p for _, p in self.started if p.returncode is None]


def spec_of(version: str, name: str = "p", sources: tuple[str, ...] = ("s",)) -> PluginSpec:
    folder = Path("/nonexistent") / version / name
    return PluginSpec(
        name=name,
        folder=folder,
        digest=f"digest-{version}",
        executable=folder / "main.py",
        manifest={"version": version, "language": "python", "executable": "main.py", "sources": list(sources)},
    )


def config(probation_s: float = 10.0, **supervisor: float) -> LoaderConfig:
    settings = dict(
        handshake_timeout_s=5.0,
        restart_backoff_initial_s=1.0,
        restart_backoff_max_s=8.0,
        stable_after_s=30.0,
        crashloop_restarts=3,
        crashloop_window_s=60.0,
        hung_after_s=3.0,
        stop_grace_s=1.0,
    )
    settings.update(supervisor)
    return LoaderConfig(supervisor=SupervisorSettings(**settings), updates=UpdateSettings(probation_s=probation_s))
