"""Streams, rules and the rules fixture plugins (seqsrc, collector, ...) written as a user would:
files in the loader's folders, and what the collector sink received."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from tests.support.loader_process import start_loader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"


def install(plugins: Path, name: str, version: str = "v1.0.0", **symbols: list[str]) -> Path:
    folder = plugins / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / f"{name}.py", folder / f"{name}.py")
    manifest = {"version": version, "language": "python", "executable": f"{name}.py", **symbols}
    (folder / f"{name}.json").write_text(json.dumps(manifest))
    return folder


def install_seqsrc(plugins: Path, **kw) -> Path:
    return install(plugins, "seqsrc", sources=["seq"], **kw)


def install_collector(plugins: Path, **kw) -> Path:
    return install(plugins, "collector", sinks=["collect"], functions=["revert"], **kw)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def stream(data: Path, name: str = "demo", conf_key: str = "default", shared: bool = False) -> None:
    sql = (
        f'CREATE STREAM {name} () WITH (TYPE="seq", DATASOURCE="t1", CONF_KEY="{conf_key}", '
        f'FORMAT="json", SHARED="{str(shared).lower()}")'
    )
    write_json(data / "streams" / f"{name}.json", {"sql": sql})


def rule(
    data: Path,
    rule_id: str,
    sql: str,
    out: Path | None = None,
    require_ack: bool = True,
    extra_actions: list | None = None,
    delay_ms: int = 0,
    **fields,
) -> None:
    props = {"path": str(out), "requireAck": require_ack, "delay_ms": delay_ms}
    actions = [{"collect": props}] if out else []
    write_json(
        data / "rules" / f"{rule_id}.json",
        {"id": rule_id, "sql": sql, "actions": actions + (extra_actions or []), **fields},
    )


def seq_config(etc: Path, **keys: dict) -> None:
    (etc / "sources").mkdir(parents=True, exist_ok=True)
    (etc / "sources" / "seq.yaml").write_text(json.dumps(keys))


def sink_messages(path: Path) -> list:
    """What the collector sink got: one decoded message per line, exactly as sent."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collected(path: Path) -> list[dict]:
    """The rows the collector sink got, in order: each message is an array of rows (or, with sendSingle, a row).

    The message shapes themselves are checked by test_sink_messages_* below.
    """
    rows: list[dict] = []
    for message in sink_messages(path):
        rows.extend(message) if isinstance(message, list) else rows.append(message)
    return rows


def wait_collected(path: Path, count: int, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = collected(path)
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{path}: {len(collected(path))} records, expected {count}")


def loader_for(processes, env, extra: str = ""):
    return start_loader(
        processes, env["plugins"], env["ipc"], env["data"], extra_config=f"etc_dir: {env['etc']}\n" + extra
    )
