"""The plugin installer below HTTP, with a fake reconciler: domain errors and rollback, in-process.

The end-to-end install tests (tests/api/test_install.py) run real plugins;
these pin the transaction itself: what each refusal raises, and that a
version that does not start leaves no folder, no staging and no ``etc/``
file behind.
"""

from __future__ import annotations

import asyncio
import functools
import json
import zipfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loader.config import LiveConfig, LoaderConfig
from loader.install.errors import (
    BadPluginName,
    InvalidPlugin,
    PluginDidNotStart,
    PluginExists,
    PluginNotFound,
    SymbolTaken,
)
from loader.install.installer import PluginInstaller, Upload
from loader.plugins.manifest import PluginSpec, load_plugin
from loader.plugins.status import PluginState, PluginStatus
from loader.plugins.symbols import SymbolRegistry


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop, with a deadline."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 20))

    return run


@dataclass
class FakeSupervisor:
    spec: PluginSpec

    async def settled(self) -> bool:
        return True


class FakeBoard:
    def __init__(self) -> None:
        self.statuses: dict[str, PluginStatus] = {}

    def get(self, name: str) -> PluginStatus | None:
        return self.statuses.get(name)


class FakeReconciler:
    """Loads whatever folder is there; a plugin whose manifest says ``"fails": true`` does not start."""

    def __init__(self, plugins_dir: Path, board: FakeBoard) -> None:
        self.plugins_dir = plugins_dir
        self.board = board
        self.supervisors: dict[str, FakeSupervisor] = {}
        self.reconciled: list[str] = []
        self._locks: dict[str, asyncio.Lock] = {}

    def hold(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def reconcile(self, name: str) -> None:
        self.reconciled.append(name)
        folder = self.plugins_dir / name
        if not folder.is_dir():
            self.supervisors.pop(name, None)
            self.board.statuses.pop(name, None)
            return
        spec = load_plugin(folder)
        if spec.manifest.get("fails"):
            self.board.statuses[name] = PluginStatus(name, PluginState.CRASHLOOP, last_error="exit 1")
            return
        self.supervisors[name] = FakeSupervisor(spec)
        self.board.statuses[name] = PluginStatus(name, PluginState.RUNNING, version=spec.version)


def plugin_zip(path: Path, name: str, version: str = "v1.0.0", **manifest: Any) -> Upload:
    body = {"version": version, "language": "python", "executable": "main.py", "sources": [f"{name}_src"]}
    body.update(manifest)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}.json", json.dumps(body))
        zf.writestr("main.py", "print('hello')\n")
        zf.writestr(f"sources/{name}_src.yaml", "default:\n  interval: 1\n")
    return Upload(path, path.stat().st_size)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[PluginInstaller, FakeReconciler, LoaderConfig]:
    config = LoaderConfig(
        plugins_dir=tmp_path / "plugins", etc_dir=tmp_path / "etc", data_dir=tmp_path / "data"
    ).resolved()
    config.plugins_dir.mkdir(parents=True)
    board = FakeBoard()
    reconciler = FakeReconciler(config.plugins_dir, board)
    registry = SymbolRegistry()
    installer = PluginInstaller(LiveConfig(config), reconciler, board, registry)
    return installer, reconciler, config


def leftovers(plugins_dir: Path) -> list[str]:
    return sorted(p.name for p in plugins_dir.iterdir())


@in_loop
async def test_install_runs_the_plugin_and_copies_its_configuration(setup, tmp_path: Path) -> None:
    installer, reconciler, config = setup
    installed = await installer.install("demo", plugin_zip(tmp_path / "demo.zip", "demo"))
    assert (installed.name, installed.version) == ("demo", "v1.0.0")
    assert "demo" in reconciler.supervisors
    assert (config.etc_dir / "sources" / "demo_src.yaml").is_file()
    assert leftovers(config.plugins_dir) == ["demo"]


@in_loop
async def test_a_plugin_that_does_not_start_is_removed_with_its_configuration(setup, tmp_path: Path) -> None:
    installer, reconciler, config = setup
    with pytest.raises(PluginDidNotStart) as raised:
        await installer.install("demo", plugin_zip(tmp_path / "demo.zip", "demo", fails=True))
    assert raised.value.code == "plugin_failed"
    assert "exit 1" in raised.value.message and "it was removed again" in raised.value.message
    assert leftovers(config.plugins_dir) == []  # no folder, no staging, no upload
    assert not (config.etc_dir / "sources" / "demo_src.yaml").exists()
    assert "demo" not in reconciler.supervisors


@in_loop
async def test_a_failed_update_restores_the_previous_version(setup, tmp_path: Path) -> None:
    installer, reconciler, config = setup
    await installer.install("demo", plugin_zip(tmp_path / "v1.zip", "demo"))
    with pytest.raises(PluginDidNotStart) as raised:
        await installer.update("demo", plugin_zip(tmp_path / "v2.zip", "demo", "v2.0.0", fails=True))
    assert "the previous version v1.0.0 was restored" in raised.value.message
    assert load_plugin(config.plugins_dir / "demo").version == "v1.0.0"
    assert reconciler.supervisors["demo"].spec.version == "v1.0.0"
    assert leftovers(config.plugins_dir) == ["demo"]


@in_loop
async def test_refusals_are_domain_errors(setup, tmp_path: Path) -> None:
    installer, reconciler, config = setup
    with pytest.raises(BadPluginName):
        await installer.install("../up", plugin_zip(tmp_path / "a.zip", "up"))
    await installer.install("demo", plugin_zip(tmp_path / "b.zip", "demo"))
    with pytest.raises(PluginExists):
        await installer.install("demo", plugin_zip(tmp_path / "c.zip", "demo"))
    with pytest.raises(PluginNotFound):
        await installer.delete("absent")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(InvalidPlugin) as raised:
        await installer.install("other", Upload(broken, 9))
    assert raised.value.code == "bad_archive"
    with pytest.raises(InvalidPlugin) as invalid:
        await installer.install("other", plugin_zip(tmp_path / "d.zip", "other", language="cobol"))
    assert invalid.value.code == "invalid_plugin"
    assert leftovers(config.plugins_dir) == ["demo"]


@in_loop
async def test_a_symbol_of_another_plugin_is_refused_before_anything_changes(setup, tmp_path: Path) -> None:
    installer, reconciler, config = setup
    installer.registry.register(reconciler_spec := _spec(tmp_path, "first", ["shared_src"]))
    assert reconciler_spec.name == "first"
    with pytest.raises(SymbolTaken):
        await installer.install("second", plugin_zip(tmp_path / "s.zip", "second", sources=["shared_src"]))
    assert leftovers(config.plugins_dir) == []
    assert reconciler.reconciled == []


@in_loop
async def test_delete_unloads_and_removes_what_the_install_wrote(setup, tmp_path: Path) -> None:
    installer, reconciler, config = setup
    await installer.install("demo", plugin_zip(tmp_path / "demo.zip", "demo"))
    assert await installer.delete("demo") == "v1.0.0"
    assert leftovers(config.plugins_dir) == []
    assert "demo" not in reconciler.supervisors
    assert not (config.etc_dir / "sources" / "demo_src.yaml").exists()


def _spec(tmp_path: Path, name: str, sources: list[str]) -> PluginSpec:
    folder = tmp_path / "elsewhere" / name
    folder.mkdir(parents=True)
    manifest = {"version": "v1", "language": "python", "executable": "main.py", "sources": sources}
    (folder / f"{name}.json").write_text(json.dumps(manifest))
    (folder / "main.py").write_text("")
    return load_plugin(folder)
