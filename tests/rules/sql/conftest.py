"""One real loader for the whole SQL corpus: every case a rule of its own, all running at once.

The loader runs the case plugin (tests/rules/sql/casefix.py) as a real process:
its source replays each case's input rows, its sink records every message.
Streams, rules and inputs are files written before the loader starts, so
it starts every rule on its first scan; REST (on a free loopback port) is
only used to read each rule's status and metrics.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rules.sql.corpus import Case, load_cases
from tests.support.api import Api, start_api
from tests.support.processes import ProcessTracker

PLUGIN = Path(__file__).resolve().parent / "casefix.py"


@dataclass
class Corpus:
    api: Api
    out: Path

    def messages(self, case: Case) -> list[str]:
        path = self.out / f"{case.rule_id}.jsonl"
        if not path.exists():
            return []
        return [line for line in path.read_text().splitlines() if line.strip()]

    def status(self, case: Case) -> dict:
        status, body = self.api.call("GET", f"/rules/{case.rule_id}/status")
        return body if status == 200 and isinstance(body, dict) else {"status": f"HTTP {status}", "message": body}


def _install(plugins: Path) -> None:
    folder = plugins / "casefix"
    folder.mkdir(parents=True)
    shutil.copy(PLUGIN, folder / "casefix.py")
    manifest = {
        "version": "v1.0.0",
        "language": "python",
        "executable": "casefix.py",
        "sources": ["rows"],
        "sinks": ["record"],
    }
    (folder / "casefix.json").write_text(json.dumps(manifest))


def _with_options(case: Case, datasource: Path) -> str:
    options = {"TYPE": "rows", "DATASOURCE": str(datasource), "FORMAT": "json", **case.stream_options}
    return ", ".join(f'{key}="{value}"' for key, value in options.items())


def write_case(case: Case, data: Path, inputs: Path, out: Path) -> None:
    """The case's input file, stream file and rule file."""
    source = inputs / f"{case.rule_id}.json"
    source.write_text(json.dumps({"rows": case.input, "metas": case.meta}))
    stream = {"sql": f"CREATE STREAM {case.stream} () WITH ({_with_options(case, source)})"}
    (data / "streams" / f"{case.stream}.json").write_text(json.dumps(stream))
    props = {"path": str(out / f"{case.rule_id}.jsonl"), "requireAck": True, **case.action}
    rule = {"id": case.rule_id, "sql": case.rule_sql, "actions": [{"record": props}], "options": case.options}
    (data / "rules" / f"{case.rule_id}.json").write_text(json.dumps(rule))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    root = tmp_path_factory.mktemp("corpus")
    dirs = {name: root / name for name in ("plugins", "data", "inputs", "out", "etc")}
    for path in dirs.values():
        path.mkdir()
    (dirs["data"] / "streams").mkdir()
    (dirs["data"] / "rules").mkdir()
    _install(dirs["plugins"])
    for case in load_cases():
        write_case(case, dirs["data"], dirs["inputs"], dirs["out"])
    ipc = Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))  # short: socket paths are limited to ~107 bytes
    processes = ProcessTracker()
    try:
        api = start_api(processes, dirs["plugins"], ipc, dirs["data"], extra=f"etc_dir: {dirs['etc']}\n")
        yield Corpus(api, dirs["out"])
    finally:
        processes.cleanup()
        shutil.rmtree(ipc, ignore_errors=True)
