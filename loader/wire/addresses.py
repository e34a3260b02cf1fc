"""Where each channel of the protocol lives.

eKuiper's SDKs hard-code these names under /tmp; the loader puts them under
its configurable IPC directory, which defaults to /tmp for that reason.
"""

from __future__ import annotations

from pathlib import Path


def control_path(ipc_dir: Path, plugin: str) -> Path:
    return ipc_dir / f"plugin_{plugin}.ipc"


def function_path(ipc_dir: Path, symbol: str) -> Path:
    return ipc_dir / f"func_{symbol}.ipc"


def data_path(ipc_dir: Path, rule_id: str, op_id: str, instance: int) -> Path:
    return ipc_dir / f"{rule_id}_{op_id}_{instance}.ipc"


def ack_path(ipc_dir: Path, rule_id: str, op_id: str, instance: int) -> Path:
    return ipc_dir / f"{rule_id}_{op_id}_{instance}_ack.ipc"


def url(path: Path) -> str:
    """nng address of an IPC socket file."""
    return f"ipc://{path}"
