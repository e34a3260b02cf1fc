"""``portable-loader reload``: check the configuration, signal the service, wait for its answer.

systemd's ``ExecReload=/bin/kill -HUP`` returns before the loader has read
anything, so ``systemctl reload`` said "Reloaded" even for a file the loader
then refused.  This command is what ``ExecReload=`` runs instead:

1. it validates the configuration file exactly as the service will and
   fails with the error (exit 1) without touching the service;
2. it sends SIGHUP to the service (``--pid $MAINPID`` under systemd, else the
   pid the service wrote into its state file);
3. it waits until the service's state file reports the outcome of that
   reload, and exits 0 for ``reloaded`` or 1 for ``reload_failed``.

The channel is a small JSON file, ``<data_dir>/loader-state.json``, that the
service writes atomically at start and after every reload: its pid, a count
of reloads, and the last outcome.  The data directory is the service's own
(writable, not in a private /tmp), and the command reads it as the same user.
Exit 3: no running loader could be signalled, or it did not answer in time.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from loader.files import write_json_atomic

STATE_FILE = "loader-state.json"
EXIT_OK, EXIT_FAILED, EXIT_NO_SERVICE = 0, 1, 3
POLL_S = 0.05


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_FILE


def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    write_json_atomic(state_path(data_dir), state)


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def reload_outcome(outcome: str, **details: Any) -> dict[str, Any]:
    """What the service reports for one reload: ``reloaded`` or ``reload_failed``, with details."""
    return {"outcome": outcome, "time": datetime.now(UTC).isoformat(timespec="milliseconds"), **details}


def answer_to(state: dict[str, Any] | None, pid: int, reloads_before: int) -> dict[str, Any] | None:
    """The outcome of the reload we asked for, once the state file holds it (else None)."""
    if not state or state.get("pid") != pid:
        return None
    last = state.get("last_reload")
    if not isinstance(last, dict) or not isinstance(state.get("reloads"), int) or state["reloads"] <= reloads_before:
        return None
    return last


def describe(outcome: dict[str, Any]) -> tuple[int, str]:
    """Exit code and the line to print for an outcome."""
    if outcome.get("outcome") == "reloaded":
        text = "reloaded; changed: " + (", ".join(outcome.get("changed") or []) or "nothing")
        if outcome.get("restart_needed"):
            text += "; needs a restart to apply: " + ", ".join(outcome["restart_needed"])
        return EXIT_OK, text
    return EXIT_FAILED, f"reload failed: {outcome.get('error')}; the running configuration is kept"


def is_loader(pid: int, announced: int | None, proc: Path = Path("/proc")) -> bool:
    """Whether ``pid`` is a running ``portable-loader serve`` (never signal a stranger that reused a pid).

    Its command line says so when ``/proc`` shows it.  Under the unit's
    ``PrivateUsers=yes`` and ``ProtectProc=invisible``, systemd runs
    ``ExecReload=`` in a user namespace of its own, and ``/proc`` hides the
    loader from it.  Then a process counts as the loader when the loader
    itself announced that pid in its state file (``announced``) and it exists
    and may be signalled by us (so it runs as our user: the command has no
    capabilities there).
    """
    try:
        args = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return pid == announced and _may_signal(pid)
    except OSError:
        return False
    return b"serve" in args and any(b"loader" in arg for arg in args)


def _may_signal(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run_reload(config_path: Path | None, pid: int | None, timeout: float, out: TextIO, err: TextIO) -> int:
    from loader.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"portable-loader: {exc}", file=err)
        print("portable-loader: not reloaded; the running configuration is kept", file=err)
        return EXIT_FAILED
    path = state_path(config.data_dir)
    before = read_state(path) or {}
    announced = before.get("pid") if isinstance(before.get("pid"), int) else None
    if pid is None:
        pid = announced
    if pid is None:
        print(f"portable-loader: no running loader: {path} does not name one; start it, or pass --pid", file=err)
        return EXIT_NO_SERVICE
    if not is_loader(pid, announced):
        print(f"portable-loader: process {pid} is not a running 'portable-loader serve'", file=err)
        return EXIT_NO_SERVICE
    seen = before.get("reloads", 0) if before.get("pid") == pid and isinstance(before.get("reloads"), int) else 0
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = answer_to(read_state(path), pid, seen)
        if outcome is not None:
            code, text = describe(outcome)
            print(text if code == EXIT_OK else f"portable-loader: {text}", file=out if code == EXIT_OK else err)
            return code
        if not is_loader(pid, announced):
            print(f"portable-loader: the loader (pid {pid}) exited during the reload", file=err)
            return EXIT_NO_SERVICE
        time.sleep(POLL_S)
    print(
        f"portable-loader: no answer from the loader (pid {pid}) within {timeout:g}s in {path}; "
        "is its data_dir the one in this configuration file?",
        file=err,
    )
    return EXIT_NO_SERVICE
