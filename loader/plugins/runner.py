"""What the supervisor needs from the outside world: starting/stopping a process, and time.

The supervisor decides; these do.  Behind two small interfaces, so its
decisions (backoff, crash-loop window, hang detection, probation, rollback)
are unit-tested with a fake runner and a fake clock in milliseconds, while
the service uses the real ones: ``ProcessRunner`` (loader/plugins/process.py's spawn
and terminate, with the output pumped into the plugin's log and tail) and
``MonotonicClock``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from loader.plugins.manifest import PluginSpec
from loader.plugins.output import OutputLimiter, OutputTail, pump
from loader.plugins.process import spawn, terminate


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` on this clock."""


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Process(Protocol):
    pid: int
    returncode: int | None

    async def wait(self) -> int:
        """The exit status, once the process has ended."""


class Runner(Protocol):
    async def start(self, spec: PluginSpec, argument: str, tail: OutputTail) -> Process:
        """Start the plugin program; its output goes to the log and ``tail``.  OSError if it cannot start."""

    async def stop(self, process: Process, grace_s: float) -> bool:
        """Stop the process (and what it started); True if it had to be killed."""

    async def drain(self, process: Process) -> None:
        """Wait (briefly) until the process's output is read to its end, so the tail is complete."""


class ProcessRunner:
    """The real runner: loader/plugins/process.py plus output pumps per process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pumps: dict[int, list[asyncio.Task[None]]] = {}

    async def start(self, spec: PluginSpec, argument: str, tail: OutputTail) -> Process:
        process = await spawn(spec, argument)
        limiter = OutputLimiter()  # one log budget for both streams of this process
        self._pumps[process.pid] = [
            asyncio.create_task(pump(process.stdout, self.name, process.pid, "stdout", tail, limiter)),  # type: ignore[arg-type]
            asyncio.create_task(pump(process.stderr, self.name, process.pid, "stderr", tail, limiter)),  # type: ignore[arg-type]
        ]
        return process  # type: ignore[return-value]

    async def stop(self, process: Process, grace_s: float) -> bool:
        killed = await terminate(process, grace_s)  # type: ignore[arg-type]
        await self.drain(process)
        return killed

    async def drain(self, process: Process) -> None:
        pumps = self._pumps.pop(process.pid, [])
        if pumps:
            await asyncio.wait(pumps, timeout=1.0)
            for task in pumps:
                task.cancel()
