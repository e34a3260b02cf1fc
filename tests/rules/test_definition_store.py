"""Stream and rule files written for a client, and the rule admission check REST makes, in-process.

The store writes a file, has the real rule manager apply it and undoes a
change the manager refuses; admission refuses a rule that could not start,
with the manager's own notion of which functions and sinks exist.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from loader.config import LoaderConfig
from loader.plugins.symbols import SymbolRegistry
from loader.rules.admission import Binding, InvalidRule, InvalidSql, Unavailable, check_rule, function_binding
from loader.rules.definitions import StreamDef, parse_stream
from loader.rules.reconciler import RuleReconciler, RuleState
from loader.rules.store import BadName, DefinitionStore, Exists, InUse, Refused, Unreadable

STREAM = 'CREATE STREAM demo () WITH (TYPE="counter", DATASOURCE="t")'


def store_for(tmp_path: Path) -> DefinitionStore:
    config = LoaderConfig(data_dir=tmp_path / "data", ipc_dir=tmp_path / "ipc").resolved()
    return DefinitionStore(RuleReconciler(config, SymbolRegistry(), lambda name: None))


def test_a_stream_is_written_applied_and_an_invalid_change_undone(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_for(tmp_path)
        await store.put_stream(parse_stream(STREAM), create=True)
        assert "demo" in store.manager.streams
        written = store.stream_path("demo").read_bytes()
        with pytest.raises(Exists):
            await store.put_stream(parse_stream(STREAM), create=True)
        broken = StreamDef(name="demo", sql="CREATE STREAM demo nonsense", type="counter")
        with pytest.raises(Refused) as refused:
            await store.put_stream(broken, create=False)
        assert refused.value.message.endswith("at /sql: expected '(' at character 20 of the stream SQL")
        assert store.stream_path("demo").read_bytes() == written
        assert "demo" not in store.manager.stream_errors
        fresh = StreamDef(name="other", sql="CREATE STREAM other nonsense", type="counter")
        with pytest.raises(Refused):
            await store.put_stream(fresh, create=True)
        assert not store.stream_path("other").exists()

    asyncio.run(scenario())


def test_a_rule_that_cannot_start_is_not_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_for(tmp_path)
        waiting = {"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}
        await store.put_rule("r1", waiting, create=True)  # its stream is missing: it waits, and is kept
        assert store.manager.rules["r1"].state == RuleState.WAITING
        with pytest.raises(Exists):
            await store.put_rule("r1", waiting, create=True)
        with pytest.raises(Refused) as refused:
            await store.put_rule("r1", {"id": "r1"}, create=False)
        assert refused.value.message.startswith("rule r1 could not start: ")
        assert json.loads(store.rule_path("r1").read_text()) == waiting
        assert store.manager.rules["r1"].state == RuleState.WAITING
        await store.put_stream(parse_stream(STREAM), create=True)
        with pytest.raises(InUse) as in_use:
            await store.drop_stream("demo", force=False)
        assert in_use.value.users == ["r1"]
        with pytest.raises(BadName):
            await store.drop_stream("../x", force=False)
        store.rule_path("r1").write_text("[1]")
        with pytest.raises(Unreadable):
            await store.trigger_rule("r1", run=False, restart=False)
        assert await store.delete_rule("r1")
        assert not await store.delete_rule("r1")

    asyncio.run(scenario())


def test_admission_uses_the_managers_function_and_sink_resolution() -> None:
    registry = SymbolRegistry().owner
    streams = {"demo": parse_stream(STREAM)}
    assert function_binding("count", registry) == Binding.WINDOW
    assert function_binding("abs", registry) == Binding.BUILTIN
    assert function_binding("nowhere", registry) == Binding.MISSING
    with pytest.raises(InvalidRule):
        check_rule([], streams, registry)
    with pytest.raises(InvalidSql):
        check_rule({"id": "r", "sql": "DELETE FROM demo", "actions": [{"log": {}}]}, streams, registry)
    with pytest.raises(Unavailable) as missing:
        check_rule({"id": "r", "sql": "SELECT nowhere(a) FROM demo", "actions": [{"log": {}}]}, streams, registry)
    assert missing.value.kind == "function"
    with pytest.raises(Unavailable) as stream:
        check_rule({"id": "r", "sql": "SELECT count(*) FROM other", "actions": [{"log": {}}]}, streams, registry)
    assert stream.value.kind == "stream"
    with pytest.raises(Unavailable) as source:
        check_rule({"id": "r", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}, streams, registry)
    assert source.value.kind == "source"
    assert "counter" in source.value.message
