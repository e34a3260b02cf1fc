"""Starting and stopping one plugin process.

How a plugin is started is fixed by the protocol (PROTOCOL.md section 1):
``<python> -u <executable> '<argJSON>'`` for Python, ``<executable>
'<argJSON>'`` otherwise, in the plugin's folder.  This module adds what a
service needs around that:

- the process leads its own process group, so a stop reaches its children;
- it gets SIGKILL when the loader dies, even by SIGKILL (Linux parent-death
  signal, set by ``setpriv`` between fork and exec: no Python runs in the
  forked child, which matters because nng is not fork-safe);
- stop is SIGTERM to the group, then SIGKILL after a grace period;
- a stop also ends every process the plugin started outside its group (a
  ``setsid`` child, what a wrapper script left): loader/plugins/proctree.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from loader.config import BatchSettings
from loader.plugins import proctree
from loader.plugins.manifest import PluginSpec
from sdk.protocol.argjson import EXTENSION_KEY, PROTOCOL_VERSION

#: Longest line read from a plugin's stdout/stderr before it is split.
LINE_LIMIT = 1 << 20

_SETPRIV = shutil.which("setpriv")
#: The launch mark (loader/plugins/proctree.py) of each running plugin process, by pid.
_marks: dict[int, str] = {}


def plugin_argument(spec: PluginSpec, ipc_dir: Path, keepalive_ms: int, batch: BatchSettings | None = None) -> str:
    """argJSON: eKuiper's PortableConfig plus our extensions under one key eKuiper ignores.

    ``batch`` (when enabled) offers the batching extension; the plugin uses
    it only if it understands it, and says so in its handshake.
    """
    extension: dict[str, object] = {
        "protocol": PROTOCOL_VERSION,
        "pluginName": spec.name,
        "ipcDir": str(ipc_dir),
        "keepaliveMs": keepalive_ms,
    }
    if batch is not None and batch.enabled:
        extension["batch"] = {"maxRecords": batch.max_records, "lingerMs": batch.linger_ms}
    return json.dumps({"sendTimeout": 1000, EXTENSION_KEY: extension})


def interpreter(spec: PluginSpec) -> list[str]:
    """The command that runs a Python plugin's program.

    The plugin's own venv when it has a requirements.txt (loader/plugins/venvs.py);
    else the loader's own interpreter unless the manifest names another:
    eKuiper's ``virtualEnvType: conda`` with ``env`` the environment name, or
    our ``virtualEnvType: venv`` with ``env`` a venv path (relative to the folder).
    """
    if spec.python is not None:
        return [str(spec.python)]
    kind = spec.manifest.get("virtualEnvType")
    env = spec.manifest.get("env")
    if kind == "conda":
        return ["conda", "run", "--no-capture-output", "-n", str(env), "python"]
    if kind == "venv":
        venv = Path(str(env))
        if not venv.is_absolute():
            venv = spec.folder / venv
        return [str(venv / "bin" / "python")]
    return [sys.executable]


def command_line(spec: PluginSpec, argument: str) -> list[str]:
    if spec.language == "python":
        return [*interpreter(spec), "-u", str(spec.executable), argument]
    return [str(spec.executable), argument]


def _die_with_parent() -> None:
    """Fallback when setpriv is missing: set the parent-death signal in the child."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


async def spawn(spec: PluginSpec, argument: str, extra_env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start the plugin program with piped stdout/stderr, in its own process group."""
    args = command_line(spec, argument)
    preexec = None
    if _SETPRIV is not None:
        args = [_SETPRIV, "--pdeathsig", "KILL", "--", *args]
    else:
        preexec = _die_with_parent
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra_env or {})
    env[proctree.MARK] = mark = proctree.new_mark()
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=str(spec.folder),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        process_group=0,
        preexec_fn=preexec,
        limit=LINE_LIMIT,
    )
    _marks[process.pid] = mark
    return process


def signal_group(pid: int, sig: int) -> None:
    """Signal the plugin's process group (it leads it); ignore a group already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


async def terminate(process: asyncio.subprocess.Process, grace_s: float) -> bool:
    """SIGTERM the group, SIGKILL after ``grace_s``; True if SIGKILL was needed.

    Whatever the plugin started outside its group gets the same SIGTERM, and
    SIGKILL once the group is done; this returns only when all of it is gone.
    """
    mark = _marks.pop(process.pid, None)
    tree = proctree.descendants(process.pid) if process.returncode is None else []
    tree += await asyncio.to_thread(proctree.marked, mark) if mark else []
    outside = sorted({pid for pid in tree if _group_of(pid) not in (process.pid, None)})
    proctree.signal_tree(outside, signal.SIGTERM)
    killed = await _terminate_group(process, grace_s)
    await proctree.end(outside, mark)
    return killed


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


async def _terminate_group(process: asyncio.subprocess.Process, grace_s: float) -> bool:
    if process.returncode is not None:
        signal_group(process.pid, signal.SIGKILL)  # leftovers of an exited leader
        return False
    signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_s)
        return False
    except TimeoutError:
        signal_group(process.pid, signal.SIGKILL)
        await process.wait()
        return True


def describe_exit(returncode: int | None) -> dict[str, object]:
    """Log keys for how a process ended: ``exit_code`` or ``signal``."""
    if returncode is None:
        return {}
    if returncode < 0:
        try:
            return {"signal": signal.Signals(-returncode).name}
        except ValueError:
            return {"signal": -returncode}
    return {"exit_code": returncode}
