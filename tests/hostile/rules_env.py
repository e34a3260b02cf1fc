"""Plugins, streams and rules for the hostile rule tests, as files (what an operator or REST writes)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES_FIXTURES = HERE.parent / "fixtures" / "rules"


def install_fixture(plugins: Path, name: str, source: Path, **symbols: list[str]) -> Path:
    folder = plugins / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, folder / f"{name}.py")
    manifest = {"version": "v1.0.0", "language": "python", "executable": f"{name}.py", **symbols}
    (folder / f"{name}.json").write_text(json.dumps(manifest))
    return folder


def install_hostilefix(plugins: Path) -> Path:
    return install_fixture(
        plugins, "hostilefix", HERE / "fixtures" / "hostilefix.py", sources=["big"], functions=["hang"]
    )


def install_seqsrc(plugins: Path) -> Path:
    return install_fixture(plugins, "seqsrc", RULES_FIXTURES / "seqsrc.py", sources=["seq"])


def install_collector(plugins: Path) -> Path:
    return install_fixture(
        plugins, "collector", RULES_FIXTURES / "collector.py", sinks=["collect"], functions=["revert"]
    )


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def stream(data: Path, name: str, source_type: str) -> None:
    sql = f'CREATE STREAM {name} () WITH (TYPE="{source_type}", DATASOURCE="t", FORMAT="json")'
    write_json(data / "streams" / f"{name}.json", {"sql": sql})


def rule(data: Path, rule_id: str, sql: str, actions: list[dict], **options: object) -> None:
    body: dict = {"id": rule_id, "sql": sql, "actions": actions}
    if options:
        body["options"] = options
    write_json(data / "rules" / f"{rule_id}.json", body)


def source_config(etc: Path, symbol: str, **conf: object) -> None:
    (etc / "sources").mkdir(parents=True, exist_ok=True)
    (etc / "sources" / f"{symbol}.yaml").write_text(json.dumps({"default": conf}))


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
