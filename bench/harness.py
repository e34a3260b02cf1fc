"""What every benchmark needs: a run directory, processes killed by pid, the
real loader as a subprocess, benchmark plugin folders, counter files.

Everything a run creates lives under one short directory ``/tmp/pbench-XXXXXX``
(unix socket paths are limited to about 107 bytes), except what eKuiper's
SDK forces into ``/tmp`` itself: those names carry the run's token and are
removed by ``Run.close``.  Every process is started with a new session and
killed by its own pid (and process group); processes the loader starts are
adopted by pid from its ``plugin.spawned`` events and killed too if they
outlive it.  A pid is only killed while its start time still matches, so a
recycled pid is never hit.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pynng

from sdk.protocol.argjson import EXTENSION_KEY, PROTOCOL_VERSION
from sdk.protocol.control import encode_command
from sdk.protocol.handshake import is_handshake

REPO = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"
BENCHPLUG = PLUGINS / "benchplug.py"
RAWPEER = PLUGINS / "rawpeer.py"
EKBENCH = PLUGINS / "ekbench.py"
PYTHON = sys.executable


class BenchError(Exception):
    """A benchmark could not produce its figure; the message says why."""


# --------------------------------------------------------------- processes


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def pid_alive(pid: int) -> bool:
    return _start_time(pid) is not None


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB (1024 * 1024 bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"process {pid} has no VmRSS (a zombie?)")


class Processes:
    """Every process of a run; ``cleanup`` leaves none behind."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []
        self._adopted: dict[int, str] = {}
        self._lock = threading.Lock()

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen:
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen([str(a) for a in args], **kwargs)
        with self._lock:
            self._procs.append(proc)
        return proc

    def adopt(self, pid: int) -> None:
        """Remember a process someone else started (a plugin of the loader), to kill it if it outlives its parent."""
        start = _start_time(pid)
        if start is not None:
            with self._lock:
                self._adopted[pid] = start

    def kill(self, proc: subprocess.Popen, timeout: float = 5.0) -> None:
        """SIGKILL a process we started, and its process group, and reap it."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, []
            adopted, self._adopted = self._adopted, {}
        for proc in reversed(procs):
            self.kill(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        for pid, start in adopted.items():
            if _start_time(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# --------------------------------------------------------------------- run


class Run:
    """One ``python -m bench``: options, the run directory, processes, loaders."""

    def __init__(self, quick: bool = False) -> None:
        self.quick = quick
        self.root = Path(tempfile.mkdtemp(prefix="pbench-", dir="/tmp"))
        self.token = self.root.name.split("-", 1)[1].lower().replace("_", "x")
        self.processes = Processes()
        self.loaders: list[Loader] = []
        # Interleaved throughput rounds: how many, and how long each one measures.
        self.rounds = 2 if quick else 5
        self.window_s = 0.3 if quick else 1.5
        self.warmup_s = 0.15 if quick else 0.4
        self._dirs = 0

    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def ipc_dir(self) -> Path:
        """A fresh, short IPC directory."""
        self._dirs += 1
        return self.dir(f"i{self._dirs}")

    def loader(self, name: str, **kwargs: Any) -> Loader:
        loader = Loader(self, name, **kwargs)
        self.loaders.append(loader)
        return loader

    def close(self, keep: bool = False) -> None:
        """Stop every loader and process; remove the run directory (socket files always, the rest unless ``keep``)."""
        for loader in reversed(self.loaders):
            loader.stop()
        self.processes.cleanup()
        leftovers = glob.glob(f"/tmp/*{self.token}*.ipc") + glob.glob(f"{self.root}/**/*.ipc", recursive=True)
        for leftover in leftovers:
            try:
                os.unlink(leftover)
            except OSError:
                pass
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------- plugins


def plugin_argument(ipc_dir: Path, name: str, keepalive_ms: int = 5000, batch: dict | None = None) -> str:
    """argJSON as the loader sends it (eKuiper's key plus our extension, batching offered if ``batch``)."""
    ext: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "pluginName": name,
        "ipcDir": str(ipc_dir),
        "keepaliveMs": keepalive_ms,
    }
    if batch is not None:
        ext["batch"] = batch
    return json.dumps({"sendTimeout": 1000, EXTENSION_KEY: ext})


class RawControl:
    """A synchronous host end of a plugin's control channel, for benchmarks that need no loader.

    REP listening on ``plugin_<name>.ipc``; the plugin's requests are our reply
    slots (PROTOCOL.md section 2).  A ``handshake`` instead of an answer means
    the command was lost and is sent again.
    """

    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        self.path = path
        self.sock = pynng.Rep0(recv_timeout=int(timeout_s * 1000), send_timeout=int(timeout_s * 1000))
        self.sock.listen(f"ipc://{path}")

    def wait_handshake(self) -> None:
        message = self.sock.recv()
        if not is_handshake(message):
            raise BenchError(f"{self.path.name}: expected a handshake, got {message[:80]!r}")

    def command(self, cmd: str, control: dict) -> None:
        payload = encode_command(cmd, control)
        self.sock.send(payload)
        while True:
            answer = self.sock.recv()
            if not is_handshake(answer):
                break
            self.sock.send(payload)
        if answer != b"ok":
            raise BenchError(f"{self.path.name}: {cmd} of {control.get('symbolName')} failed: {answer[:300]!r}")

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def install_benchplug(
    parent: Path,
    name: str,
    *,
    folder_name: str | None = None,
    version: str = "v1.0.0",
    count_dir: Path | None = None,
    sources: list[str] = (),
    sinks: list[str] = (),
    functions: list[str] = (),
) -> Path:
    """A plugin folder running bench/plugins/benchplug.py with the given symbols.

    ``folder_name`` (default ``name``) lets a folder be prepared under a
    hidden staging name and renamed to ``name`` later; the manifest is named
    for ``name`` either way.
    """
    folder = parent / (folder_name or name)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(BENCHPLUG, folder / "benchplug.py")
    if count_dir is not None:
        (folder / "bench.json").write_text(json.dumps({"count_dir": str(count_dir)}))
    manifest = {"version": version, "language": "python", "executable": "benchplug.py"}
    for key, symbols in (("sources", sources), ("sinks", sinks), ("functions", functions)):
        if symbols:
            manifest[key] = list(symbols)
    write_json(folder / f"{name}.json", manifest)
    return folder


def write_json(path: Path, data: Any) -> None:
    """Write atomically, so a watcher never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_counter(path: Path) -> tuple[int, float] | None:
    """``(count, monotonic time)`` last reported by a benchmark plugin, None before its first report."""
    try:
        count, at = path.read_text().split()
        return int(count), float(at)
    except (OSError, ValueError):
        return None


def wait_counter(path: Path, above: int = 0, timeout: float = 15.0) -> tuple[int, float]:
    """Wait until the counter at ``path`` exceeds ``above``."""
    deadline = time.monotonic() + timeout
    while True:
        sample = read_counter(path)
        if sample is not None and sample[0] > above:
            return sample
        if time.monotonic() > deadline:
            raise BenchError(f"{path.name}: no count above {above} within {timeout:g}s (last: {sample})")
        time.sleep(0.02)


def counter_rate(path: Path, warmup_s: float, window_s: float, start_above: int = 0) -> float:
    """Records/s between two reports ``window_s`` apart, after the count started moving and ``warmup_s``."""
    wait_counter(path, start_above)
    time.sleep(warmup_s)
    first = read_counter(path)
    time.sleep(window_s)
    last = read_counter(path)
    assert first is not None and last is not None
    if last[1] <= first[1]:
        raise BenchError(f"{path.name}: the plugin stopped reporting (is it running?)")
    return (last[0] - first[0]) / (last[1] - first[1])


# ------------------------------------------------------------------ loader


def event_time(event: dict) -> float:
    """Wall-clock seconds of a loader event's ``timestamp`` (ISO 8601, UTC)."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def batch_supported() -> bool:
    """Whether this loader has the batching extension's ``batch`` setting (docs/protocol.md, Extensions)."""
    try:
        schema = json.loads((REPO / "schema" / "loader-config.schema.json").read_text())
    except (OSError, ValueError):
        return False
    return "batch" in schema.get("properties", {})


class Loader:
    """``python -m loader serve`` on folders of its own, its JSON log events collected by a thread.

    ``batch``: True or False sets the batching extension on or off (when the
    loader has it); None keeps the loader's default.
    """

    def __init__(
        self,
        run: Run,
        name: str,
        *,
        settle_ms: int = 50,
        rest: str = "off",
        rescan_s: float = 5.0,
        supervisor: dict | None = None,
        batch: bool | None = False,
        ipc_dir: Path | None = None,
    ) -> None:
        self.run = run
        self.name = name
        self.base = run.dir(name)
        self.plugins_dir = self.base / "plugins"
        self.data_dir = self.base / "data"
        self.etc_dir = self.base / "etc"
        self.count_dir = self.base / "counts"
        self.ipc_dir = ipc_dir or run.ipc_dir()
        for d in (self.plugins_dir, self.data_dir, self.etc_dir, self.count_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.settle_ms = settle_ms
        self.rest = rest
        self.rescan_s = rescan_s
        self.supervisor = supervisor or {}
        self.batch = batch
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self.events: list[dict] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0, wait: bool = True) -> None:
        """Start the loader; with ``wait``, return once it logged ``loader.ready`` (else call ``wait_ready``)."""
        config = self.base / "loader.yaml"
        lines = [
            f"plugins_dir: {self.plugins_dir}",
            f"etc_dir: {self.etc_dir}",
            f"data_dir: {self.data_dir}",
            f"ipc_dir: {self.ipc_dir}",
            f"rest: '{self.rest}'",
            "log: {format: json, level: info}",
            f"watch: {{settle_ms: {self.settle_ms}, rescan_s: {self.rescan_s}}}",
        ]
        if self.supervisor:
            lines.append(f"supervisor: {json.dumps(self.supervisor)}")
        if self.batch is not None and batch_supported():
            lines.append(f"batch: {{enabled: {str(self.batch).lower()}}}")
        config.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = self.run.processes.popen(
            [PYTHON, "-m", "loader", "serve", "--config", config],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, name=f"log-{self.name}", daemon=True)
        self._reader.start()
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_for("loader.scan_complete", timeout=timeout)  # loader.ready comes before the first scan

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        log = open(self.base / "loader.log", "a")
        for line in self.proc.stdout:
            log.write(line)
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and event.get("event") == "plugin.spawned" and event.get("pid"):
                self.run.processes.adopt(event["pid"])
            with self._cond:
                self.raw.append(line)
                if isinstance(event, dict):
                    self.events.append(event)
                self._cond.notify_all()
        log.close()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        """A cursor: ``find`` and ``wait_for`` with ``since=mark`` only see later events."""
        with self._cond:
            return len(self.events)

    def find(self, event: str, since: int = 0, **match: Any) -> list[dict]:
        with self._cond:
            return [
                e
                for e in self.events[since:]
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
            ]

    def wait_for(self, event: str, timeout: float = 20.0, since: int = 0, count: int = 1, **match: Any) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    e
                    for e in self.events[since:]
                    if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
                ]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if remaining <= 0 or exited:
                    tail = "".join(self.raw[-15:])
                    why = (
                        f"the loader exited with status {self.proc.returncode}"
                        if exited
                        else f"not within {timeout:g}s"
                    )
                    raise BenchError(f"loader {self.name}: no {event} {match} ({why}); last output:\n{tail}")
                self._cond.wait(min(remaining, 0.2))

    def stream(self, name: str, source: str, conf_key: str = "default") -> None:
        sql = (
            f'CREATE STREAM {name} () WITH (TYPE="{source}", DATASOURCE="bench", CONF_KEY="{conf_key}", FORMAT="json")'
        )
        write_json(self.data_dir / "streams" / f"{name}.json", {"sql": sql})

    def source_config(self, symbol: str, **keys: dict) -> None:
        (self.etc_dir / "sources").mkdir(exist_ok=True)
        (self.etc_dir / "sources" / f"{symbol}.yaml").write_text(json.dumps(keys))

    def add_rule(self, rule_id: str, sql: str, actions: list[dict]) -> None:
        write_json(self.data_dir / "rules" / f"{rule_id}.json", {"id": rule_id, "sql": sql, "actions": actions})

    def remove_rule(self, rule_id: str) -> None:
        (self.data_dir / "rules" / f"{rule_id}.json").unlink(missing_ok=True)

    def start_rule(self, rule_id: str, sql: str, actions: list[dict], timeout: float = 20.0) -> None:
        mark = self.mark()
        self.add_rule(rule_id, sql, actions)
        self.wait_for("rule.started", timeout=timeout, since=mark, rule=rule_id)

    def delete_rule(self, rule_id: str, timeout: float = 20.0) -> None:
        mark = self.mark()
        self.remove_rule(rule_id)
        self.wait_for("rule.deleted", timeout=timeout, since=mark, rule=rule_id)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the loader stops its plugins and removes its sockets), SIGKILL if it hangs."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.run.processes.kill(proc)
        if self._reader is not None:
            self._reader.join(5)  # it ends at the pipe's end of file
        if proc.stdout is not None:
            try:
                proc.stdout.close()
            except OSError:
                pass
