"""Symbol ownership is the same after a restart (issue 14, finding 9).

Two plugins declaring the same source: the first to be loaded owns it and
the other is refused.  Without a record, a restart re-decided this by the
order the folders were read, so after a restart the *other* plugin could own
the source and rules silently read from it.  Claims now live in the data
directory and survive restarts, as long as the claimant's folder exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loader.plugins.manifest import PluginSpec, load_plugin
from loader.plugins.symbols import SymbolConflict, SymbolRegistry
from tests.support.loader_process import make_plugin, start_loader


def spec(parent: Path, name: str, sources: tuple[str, ...] = ("counter",)) -> PluginSpec:
    """A plugin folder declaring ``sources`` (rewritten if it exists), loaded."""
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text("print('hi')\n")
    (folder / f"{name}.json").write_text(
        json.dumps({"version": "v1.0.0", "language": "python", "executable": "main.py", "sources": list(sources)})
    )
    return load_plugin(folder)


def test_a_claim_outlives_the_registry_while_the_claimants_folder_exists(tmp_path):
    record = tmp_path / "data" / "symbols.json"
    folders = tmp_path / "plugins"
    SymbolRegistry(record).register(spec(folders, "zed"))  # zed declares source counter
    restarted = SymbolRegistry(record)
    newcomer = spec(folders, "abc")
    with pytest.raises(SymbolConflict) as info:
        restarted.check(newcomer, exists=lambda name: (folders / name).is_dir())
    assert "'zed'" in str(info.value) and "first" in str(info.value)
    shutil.rmtree(folders / "zed")  # a claimant whose folder is gone holds nothing
    restarted.check(newcomer, exists=lambda name: (folders / name).is_dir())


def test_a_new_version_without_the_symbol_and_a_removed_folder_end_the_claim(tmp_path):
    record = tmp_path / "symbols.json"
    registry = SymbolRegistry(record)
    registry.register(spec(tmp_path, "zed"))
    with pytest.raises(SymbolConflict):
        SymbolRegistry(record).check(spec(tmp_path, "abc"), exists=lambda name: True)
    registry.register(spec(tmp_path, "zed", ("other",)))  # the new version no longer declares counter
    SymbolRegistry(record).check(spec(tmp_path, "abc"), exists=lambda name: True)
    registry.unregister("zed", forget=True)
    SymbolRegistry(record).check(spec(tmp_path, "abc", ("other",)), exists=lambda name: True)


def test_an_unreadable_record_counts_as_no_claims(tmp_path):
    record = tmp_path / "symbols.json"
    record.write_text("[" * 100000)
    SymbolRegistry(record).check(spec(tmp_path, "abc"), exists=lambda name: True)


def test_the_first_owner_keeps_the_symbol_across_a_loader_restart(processes, tmp_path, ipc_dir):
    plugins, data = tmp_path / "plugins", tmp_path / "data"
    plugins.mkdir()
    make_plugin(plugins, "zed", sources=["shared"])  # read after "abc" at every start
    loader = start_loader(processes, plugins, ipc_dir, data)
    loader.wait_for("plugin.running", plugin="zed")
    make_plugin(plugins, "abc", sources=["shared"])
    assert "'zed'" in loader.wait_for("plugin.invalid", plugin="abc")["error"]
    assert loader.terminate() == 0

    again = start_loader(processes, plugins, ipc_dir, data)
    again.wait_for("plugin.running", plugin="zed")
    refused = again.wait_for("plugin.invalid", plugin="abc")
    assert "'zed'" in refused["error"]  # by its claim, or as the provider if zed was read first
    assert again.find("plugin.spawned", plugin="abc") == []
