"""A booted systemd-nspawn container: start, run commands inside, tear down by pid.

The machines this runs on have no systemd of their own, so there is no
machined to register with and no unit to run in: nspawn runs with
``--register=no --keep-unit --console=pipe`` as a plain child process, and
commands enter the container's namespaces with ``nsenter -t <PID 1> -a``.
The container has a private network (only its own loopback): nothing inside
can reach a package index, so the install is offline by construction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# A clean environment for commands inside: nothing of the host's leaks in.
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


class ContainerError(RuntimeError):
    """The container did not boot or a command inside it failed."""


def inner_pid1(nspawn_pid: int) -> int | None:
    """The host pid of the container's PID 1: the descendant of nspawn whose innermost pid is 1."""
    pending = [nspawn_pid]
    while pending:
        pid = pending.pop()
        for child in _children(pid):
            nspids = _nspids(child)
            if len(nspids) > 1 and nspids[-1] == 1:
                return child
            pending.append(child)
    return None


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            children.extend(int(p) for p in text.split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return children


def _nspids(pid: int) -> list[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(p) for p in line.split()[1:]]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return []


@dataclass
class Result:
    args: str
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Result:
        if self.returncode != 0:
            raise ContainerError(
                f"inside the container, `{self.args}` exited {self.returncode}\n"
                f"stdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-4000:]}"
            )
        return self


class Container:
    """One booted root filesystem; every process it started is ended by pid in ``stop``."""

    def __init__(self, root: Path, console_log: Path) -> None:
        self.root = root
        self.console_log = console_log
        self.nspawn: subprocess.Popen | None = None
        self.leader: int | None = None

    def boot(self, timeout: float = 120.0) -> None:
        console = self.console_log.open("wb")
        self.nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-b",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                "--private-network",
                "-D",
                str(self.root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        console.close()
        deadline = time.monotonic() + timeout
        while self.leader is None:
            self._check_alive()
            self.leader = inner_pid1(self.nspawn.pid)
            if time.monotonic() > deadline:
                raise ContainerError(
                    f"no PID 1 under systemd-nspawn after {timeout:.0f}s; console:\n{self.console_tail()}"
                )
            time.sleep(0.1)
        self._wait_booted(deadline)

    def _wait_booted(self, deadline: float) -> None:
        """Wait until systemd says the boot is over: running, or degraded (some unit failed)."""
        state = ""
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.run(
                "systemctl is-system-running --wait", timeout=max(1.0, deadline - time.monotonic())
            ).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise ContainerError(
            f"the container's systemd did not finish booting (last state {state!r}); console:\n{self.console_tail()}"
        )

    def _check_alive(self) -> None:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise ContainerError(f"systemd-nspawn exited {self.nspawn.returncode}; console:\n{self.console_tail()}")

    def run(self, script: str, timeout: float = 120.0, input: str | None = None) -> Result:
        """Run a bash script as root inside the container (all its namespaces, a clean environment)."""
        if self.leader is None:
            raise ContainerError("the container is not booted")
        args = [
            "nsenter",
            "-t",
            str(self.leader),
            "-a",
            "--",
            "/usr/bin/env",
            "-i",
            *(f"{k}={v}" for k, v in INSIDE_ENV.items()),
            "/bin/bash",
            "-o",
            "pipefail",
            "-c",
            f"cd /root && {script}",
        ]
        proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
        return Result(script, proc.returncode, proc.stdout, proc.stderr)

    def host_path(self, inside: str) -> Path:
        """Where a path of the container is on the host (the tree is a plain directory)."""
        return self.root / inside.lstrip("/")

    def console_tail(self, chars: int = 4000) -> str:
        try:
            return self.console_log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Power off; if that does not end nspawn in time, kill it (and its process group) by pid."""
        if self.nspawn is None or self.nspawn.poll() is not None:
            return
        if self.leader is not None:
            try:
                subprocess.run(
                    ["nsenter", "-t", str(self.leader), "-a", "--", "systemctl", "poweroff", "--no-block"],
                    capture_output=True,
                    timeout=10,
                )
            except (subprocess.TimeoutExpired, OSError):
                pass
        try:
            self.nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Killing the container's PID 1 ends every process of its pid namespace.
            for pid in (self.leader, self.nspawn.pid):
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.nspawn.wait(timeout=10)
