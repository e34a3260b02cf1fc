"""Quiet when idle: no reads, no reconciles and no repeated lines while nothing changes.

Real loader processes; the kernel (inotify IN_OPEN) says whether the loader
opened a manifest, so the test does not depend on what the loader reports.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pynng
import pytest

from loader.app.changes import WatchedFolder
from loader.app.watcher import FolderWatcher
from loader.repeats import Repeats
from tests.support.inotify_probe import OpenCounter
from tests.support.loader_process import make_plugin, start_loader

WINDOW_S = 10.0


def replace_file(path: Path, content: bytes) -> None:
    """Write as editors do: a new file renamed over the old one (the reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


def test_idle_loader_opens_no_manifest_in_a_window_with_rescans(processes, tmp_path: Path, ipc_dir: Path):
    plugins = tmp_path / "plugins"
    names = [f"idle{i}" for i in range(5)]
    for name in names:
        make_plugin(plugins, name)
    loader = start_loader(processes, plugins, ipc_dir, tmp_path / "data", log_level="info")  # rescan_s: 1
    for name in names:
        loader.wait_for("plugin.running", plugin=name)
    manifests = [plugins / name / f"{name}.json" for name in names]
    lines_before = len(loader.raw)
    with OpenCounter(manifests) as opens:
        time.sleep(WINDOW_S)  # the window itself is what is measured: about ten rescans happen in it
        assert opens.poll() == 0, f"manifests opened while idle: {opens.counts}"
        assert loader.raw[lines_before:] == [], "an idle loader logged"
        # The probe does see a read: a real change is read (once its settle time and a rescan allow).
        manifest = manifests[0]
        body = json.loads(manifest.read_text())
        opens.poll()
        before = opens.total
        replace_file(manifest, json.dumps({**body, "version": "v1.0.1"}).encode())
        assert opens.wait_for(before + 1, timeout=10) > before
    loader.wait_for("plugin.updated", plugin=names[0])


def test_manifest_warning_is_logged_once_per_content(processes, tmp_path: Path, ipc_dir: Path):
    plugins = tmp_path / "plugins"
    folder = make_plugin(plugins, "warned", sourcse=["typo"])
    manifest = folder / "warned.json"
    loader = start_loader(processes, plugins, ipc_dir, tmp_path / "data", log_level="info")
    loader.wait_for("plugin.running", plugin="warned")
    assert len(loader.find("plugin.manifest_warning", plugin="warned")) == 1
    with OpenCounter([manifest]) as opens:
        for _ in range(3):  # same bytes, new mtime: read again (the kernel says so), same content
            content = manifest.read_bytes()
            seen = opens.poll()
            replace_file(manifest, content)
            assert opens.wait_for(seen + 1, timeout=10) > seen, "the loader did not look again"
    time.sleep(0.3)  # the warning would be logged right after the read
    assert len(loader.find("plugin.manifest_warning", plugin="warned")) == 1
    assert loader.find("plugin.updating", plugin="warned") == []
    body = json.loads(manifest.read_text())
    replace_file(manifest, json.dumps({**body, "version": "v2"}).encode())  # new content: its warnings are news
    loader.wait_for("plugin.manifest_warning", plugin="warned", count=2)
    loader.wait_for("plugin.updated", plugin="warned")
    assert len(loader.find("plugin.manifest_warning", plugin="warned")) == 2


def test_control_socket_held_by_another_process_is_logged_once_with_retries(processes, tmp_path: Path, ipc_dir: Path):
    plugins = tmp_path / "plugins"
    folder = make_plugin(plugins, "held")
    squatter = pynng.Rep0()
    squatter.listen(f"ipc://{ipc_dir}/plugin_held.ipc")
    try:
        loader = start_loader(processes, plugins, ipc_dir, tmp_path / "data", log_level="info")
        first = loader.wait_for("plugin.invalid", plugin="held")
        assert "in use by another process" in first["error"] and first["repeated"] == 0
        with OpenCounter([folder / "held.json"]) as opens:
            assert opens.wait_for(3, timeout=15) >= 3, "the loader stopped retrying"  # three rescans retried
        assert len(loader.find("plugin.invalid", plugin="held")) == 1
        assert len(loader.find("plugin.loading", plugin="held")) == 1
    finally:
        squatter.close()
    loader.wait_for("plugin.running", plugin="held", timeout=15)


def test_watcher_ignores_opens_and_reads_but_not_writes(tmp_path: Path):
    """Reading a watched file must not poke; writing, attributes, creating and removing must."""
    (tmp_path / "p").mkdir()
    target = tmp_path / "p" / "file.txt"
    target.write_text("x")

    async def scenario() -> list[str]:
        poked: list[str] = []
        watcher = WatchedFolder(
            "plugins", tmp_path, lambda name: _record(poked, name), _never, lambda: 0.05, [FolderWatcher(tmp_path)]
        )
        watcher.start()
        try:
            await asyncio.sleep(0.3)
            for _ in range(5):
                target.read_text()
                list((tmp_path / "p").iterdir())
            await asyncio.sleep(0.5)
            assert poked == [], "a read reached the reconciler"
            for change in (
                lambda: target.write_text("y"),
                lambda: target.chmod(0o600),
                lambda: (tmp_path / "p" / "new").write_text("n"),
                lambda: target.unlink(),
            ):
                before = len(poked)
                change()
                for _ in range(50):
                    await asyncio.sleep(0.05)
                    if len(poked) > before:
                        break
                assert len(poked) > before, "a content change did not reach the reconciler"
            return poked
        finally:
            watcher.stop()

    assert set(asyncio.run(scenario())) == {"p"}


async def _record(poked: list[str], name: str) -> None:
    poked.append(name)


def test_repeats_logs_first_then_once_per_interval_with_a_count():
    now = [0.0]
    repeats = Repeats(interval_s=60, clock=lambda: now[0])
    assert repeats.check("k") == 0
    for second in range(1, 60):
        now[0] = second
        assert repeats.check("k") is None
    now[0] = 61
    assert repeats.check("k") == 59
    now[0] = 62
    assert repeats.check("k") is None
    repeats.clear("k")
    assert repeats.check("k") == 0
    assert not repeats.active("other")


@pytest.mark.parametrize("change", ["rename", "content_same_size_and_mtime"])
def test_fingerprint_sees_changes_that_keep_size_and_mtime(tmp_path: Path, change: str):
    import os

    from loader.plugins.fingerprint import stat_fingerprint

    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "p.json").write_text("{}")
    (folder / "main.py").write_text("print(1)")
    before = stat_fingerprint(folder)
    assert stat_fingerprint(folder) == before
    st = (folder / "main.py").stat()
    if change == "rename":
        other = tmp_path / "q"
        other.mkdir()
        for name in ("p.json", "main.py"):
            (other / name).write_text((folder / name).read_text())
            os.utime(other / name, ns=((folder / name).stat().st_atime_ns, (folder / name).stat().st_mtime_ns))
        folder.rename(tmp_path / "old")
        other.rename(folder)
    else:
        time.sleep(0.01)
        (folder / "main.py").write_text("print(2)")
        os.utime(folder / "main.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert stat_fingerprint(folder) != before


async def _never() -> None:
    raise AssertionError("no rescan runs in this test")
