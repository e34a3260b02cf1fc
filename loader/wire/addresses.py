"""Where each channel of the protocol lives.

eKuiper's SDKs hard-code these names under /tmp; the loader puts them under
its configurable IPC directory, which defaults to /tmp for that reason.  The
names themselves are the protocol's (sdk/protocol/names.py), shared with the sdk.
"""

from __future__ import annotations

import stat
from pathlib import Path

from sdk.protocol import names
from sdk.protocol.ipc_listen import is_live_socket


def control_path(ipc_dir: Path, plugin: str) -> Path:
    return ipc_dir / names.control_name(plugin)


def function_path(ipc_dir: Path, symbol: str) -> Path:
    return ipc_dir / names.function_name(symbol)


def data_path(ipc_dir: Path, rule_id: str, op_id: str, instance: int) -> Path:
    return ipc_dir / names.data_name(rule_id, op_id, instance)


def ack_path(ipc_dir: Path, rule_id: str, op_id: str, instance: int) -> Path:
    return ipc_dir / names.ack_name(rule_id, op_id, instance)


def url(path: Path) -> str:
    """nng address of an IPC socket file."""
    return f"ipc://{path}"


def claim(path: Path) -> None:
    """Make ``path`` free to listen on: remove a stale socket file, refuse a live one.

    A live socket means another process (a second loader, or eKuiper itself
    sharing /tmp) serves that name; taking it over would break that process.
    """
    if not path.exists():
        return
    if is_live_socket(path):
        raise OSError(
            f"{path} is in use by another process (another loader, or eKuiper, sharing the IPC directory?); "
            "stop it or give this loader its own ipc_dir"
        )
    path.unlink(missing_ok=True)


def remove_stale_sockets(ipc_dir: Path) -> list[Path]:
    """Remove ``*.ipc`` socket files in ``ipc_dir`` that nobody listens on (left by a killed run)."""
    removed = []
    for path in ipc_dir.glob("*.ipc"):
        try:
            if not stat.S_ISSOCK(path.lstat().st_mode) or is_live_socket(path):
                continue
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed
