"""Running the real loader as a subprocess and reading its JSON log events.

End-to-end tests start ``python -m loader serve`` on per-test folders and
wait for the events it logs, exactly as an operator reading journald would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RAW_PLUGIN = REPO / "tests" / "fixtures" / "loader" / "rawplugin.py"


def make_plugin(
    plugins_dir: Path,
    name: str,
    version: str = "v1.0.0",
    behaviour: dict | None = None,
    sources: list[str] | None = None,
    **manifest: Any,
) -> Path:
    """Create (or overwrite) a raw test plugin folder and return it."""
    folder = plugins_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(RAW_PLUGIN, folder / "main.py")
    if behaviour is not None:
        (folder / "behaviour.json").write_text(json.dumps(behaviour))
    body = {
        "version": version,
        "language": "python",
        "executable": "main.py",
        "sources": sources if sources is not None else [f"{name}_src"],
    }
    body.update(manifest)
    (folder / f"{name}.json").write_text(json.dumps(body))
    return folder


@dataclass
class LoaderProcess:
    """A loader subprocess with its events collected by a reader thread."""

    proc: subprocess.Popen
    events: list[dict] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.raw.append(line)
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass
                self._cond.notify_all()

    def find(self, event: str, **match: Any) -> list[dict]:
        with self._cond:
            return [e for e in self.events if e.get("event") == event and all(e.get(k) == v for k, v in match.items())]

    def count(self, event: str, **match: Any) -> int:
        """How many ``event`` lines with the given keys so far: the mark a later ``wait_for(count=...)`` counts from."""
        return len(self.find(event, **match))

    def wait_looked_at(self, folder: str, rescans_before: int, timeout: float = 10.0) -> None:
        """Block until the loader has rescanned ``folder`` from start to end after the mark ``rescans_before``.

        The debug event ``rescan.done`` ends each pass; a pass already running at the mark may have
        missed the change, so the second pass after it is the one that surely saw it. This is how a test
        says "nothing happened" without sleeping and hoping.
        """
        self.wait_for("rescan.done", timeout=timeout, count=rescans_before + 2, folder=folder)

    def wait_for(self, event: str, timeout: float = 10.0, count: int = 1, **match: Any) -> dict:
        """Block until ``count`` events named ``event`` with the given keys exist; return the last."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    e for e in self.events if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
                ]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None and not self._pending():
                    tail = "".join(self.raw[-30:])
                    raise AssertionError(f"no {event} {match} within {timeout}s; last output:\n{tail}")
                self._cond.wait(min(remaining, 0.2))

    def _pending(self) -> bool:
        return self.proc.stdout is not None and not self.proc.stdout.closed

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def start_loader(
    processes,
    plugins_dir: Path,
    ipc_dir: Path,
    data_dir: Path,
    extra_config: str = "",
    settle_ms: int = 100,
    env_extra: dict[str, str] | None = None,
    wait_ready: bool = True,
    wrapper: list[str] | None = None,
    rescan_s: float = 1,
    log_level: str = "debug",
) -> LoaderProcess:
    """Start the loader with a per-test config; returns once its first scan is done (``loader.scan_complete``).

    ``loader.ready`` comes earlier, as soon as the loader serves; tests mostly
    want the plugins already in the folder to have been looked at.  ``wrapper``
    is a command the loader's command line is appended to (a sandbox).  ``rescan_s`` is short by
    default so tests see missed changes soon; a test measuring idle cost passes the loader's default.
    ``log_level`` is debug so tests can wait for ``reconcile.done`` and ``rescan.done``; a test of what
    an idle loader logs passes the level a device runs at.
    """
    config = data_dir / "loader.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"plugins_dir: {plugins_dir}\nipc_dir: {ipc_dir}\ndata_dir: {data_dir}\nrest: 'off'\n"
        f"log: {{format: json, level: {log_level}}}\n"
        f"watch: {{settle_ms: {settle_ms}, rescan_s: {rescan_s}, incomplete_grace_s: 3}}\n"
        f"updates: {{probation_s: 0.1}}\n" + extra_config
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    proc = processes.popen(
        [*(wrapper or []), sys.executable, "-m", "loader", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env,
    )
    loader = LoaderProcess(proc)
    threading.Thread(target=loader._read, daemon=True).start()
    if wait_ready:
        loader.wait_for("loader.scan_complete", timeout=20)
    return loader


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False
