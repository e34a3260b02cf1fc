"""The rule manager remembers the stat of stream and rule files that exist, not of every name ever seen.

A device that creates and deletes streams and rules for months (names with a
timestamp, say) must not grow a table of files long gone.  In-process: a
RuleReconciler over temporary folders, no plugin, no loader process.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from loader.config import LoaderConfig
from loader.plugins.symbols import SymbolRegistry
from loader.rules.reconciler import RuleReconciler


def test_deleted_stream_and_rule_files_are_forgotten(tmp_path: Path) -> None:
    config = LoaderConfig(
        plugins_dir=tmp_path / "plugins", data_dir=tmp_path / "data", ipc_dir=tmp_path / "ipc", etc_dir=tmp_path / "etc"
    )
    manager = RuleReconciler(config, SymbolRegistry(), lambda name: None)
    manager.streams_dir.mkdir(parents=True)
    manager.rules_dir.mkdir(parents=True)

    async def churn() -> None:
        for n in range(20):
            stream = manager.streams_dir / f"s{n}.json"
            stream.write_text(json.dumps({"sql": f'CREATE STREAM s{n} () WITH (TYPE="nosuch", DATASOURCE="t")'}))
            rule = manager.rules_dir / f"r{n}.json"
            rule.write_text(json.dumps({"id": f"r{n}", "sql": f"SELECT * FROM s{n}", "actions": [{"log": {}}]}))
            await manager.reconcile_all()
            stream.unlink()
            rule.unlink()
            await manager.reconcile_all()
        await manager.shutdown()

    asyncio.run(churn())
    assert manager._file_stats == {}, sorted(map(str, manager._file_stats))
