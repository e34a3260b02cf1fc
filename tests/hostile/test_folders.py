"""Findings 3, 4 and 5: nothing in a plugin folder can hang the loader or exhaust its memory.

Before: a FIFO blocked the digest forever (on the event loop: REST dead,
SIGTERM ignored); a link to /dev/zero read until MemoryError; links
``a -> .`` and ``b -> .`` made the walk exponential.  Now the walk reads only
regular files and directories inside the folder, refuses special files with
an error naming the path, visits each directory once, is capped in entries
and bytes, and runs off the event loop with a timeout.
"""

from __future__ import annotations

import os
import time

import pytest

from loader.config import FolderLimits
from loader.plugins.digest import folder_digest
from loader.plugins.folders import FolderError, walk
from loader.plugins.manifest import ManifestError, load_plugin
from tests.hostile.helpers import assert_serving, snapshot
from tests.support.api import start_api
from tests.support.loader_process import make_plugin


def _run_bounded(function, *args, timeout: float = 10.0):
    """Call ``function`` in a thread and fail (instead of hanging the suite) if it does not return."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result(timeout=timeout)


def test_fifo_is_refused_with_its_path(tmp_path):
    folder = make_plugin(tmp_path, "fifo")
    os.mkfifo(folder / "pipe")
    with pytest.raises(FolderError, match=r"fifo/pipe is a FIFO \(named pipe\)"):
        _run_bounded(folder_digest, folder)
    with pytest.raises(ManifestError, match="is a FIFO"):
        _run_bounded(load_plugin, folder)


def test_link_to_dev_zero_is_refused_without_reading_it(tmp_path):
    folder = make_plugin(tmp_path, "zero")
    (folder / "zero").symlink_to("/dev/zero")
    with pytest.raises(FolderError, match=r"zero/zero is a character device \(it links to /dev/zero\)"):
        _run_bounded(folder_digest, folder)


def test_socket_is_refused(tmp_path):
    import socket

    folder = make_plugin(tmp_path, "sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "s"))
        with pytest.raises(FolderError, match="sock/s is a socket"):
            folder_digest(folder)


def test_directory_links_are_never_followed_so_loops_cannot_happen(tmp_path):
    folder = make_plugin(tmp_path, "loops")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.txt").write_text("x")
    (folder / "a").symlink_to(".")
    (folder / "b").symlink_to(".")
    (folder / "sub" / "up").symlink_to("..")
    (folder / "alias").symlink_to("sub")
    (folder / "main-link.py").symlink_to("main.py")
    started = time.monotonic()
    entries = _run_bounded(walk, folder)
    assert time.monotonic() - started < 2
    kinds = {e.relative: e.kind for e in entries}
    assert kinds == {
        "a": "link",
        "alias": "link",
        "b": "link",
        "loops.json": "file",
        "main.py": "file",
        "main-link.py": "file",
        "sub/data.txt": "file",
        "sub/up": "link",
    }
    digest = folder_digest(folder)
    (folder / "sub" / "data.txt").write_text("y")
    assert folder_digest(folder) != digest
    digest = folder_digest(folder)
    (folder / "main.py").write_text("# changed")
    assert folder_digest(folder) != digest  # and the content behind a followed file link


def test_links_out_of_the_folder_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"x" * 1000)
    folder = make_plugin(tmp_path / "plugins", "out")
    (folder / "lib").symlink_to(outside)
    (folder / "file").symlink_to(outside / "big.bin")
    entries = {e.relative: e for e in walk(folder)}
    assert entries["lib"].kind == "link" and entries["lib"].target == str(outside)
    assert entries["file"].kind == "link"
    assert "lib/big.bin" not in entries


def test_caps_on_entries_and_bytes(tmp_path):
    folder = make_plugin(tmp_path, "big")
    for index in range(30):
        (folder / f"f{index}").write_bytes(b"x" * 1024)
    with pytest.raises(FolderError, match=r"more than 10 entries.*folders.max_files"):
        walk(folder, FolderLimits(max_files=10))
    with pytest.raises(FolderError, match=r"more than 0.01 MiB.*folders.max_mb"):
        walk(folder, FolderLimits(max_mb=0.01))
    assert len(walk(folder)) == 32


def test_loader_keeps_serving_with_hostile_folders(processes, tmp_path, ipc_dir):
    plugins, data = tmp_path / "plugins", tmp_path / "data"
    make_plugin(plugins, "good")
    os.mkfifo(make_plugin(plugins, "fifo") / "pipe")
    (make_plugin(plugins, "zero") / "zero").symlink_to("/dev/zero")
    loops = make_plugin(plugins, "loops")
    (loops / "a").symlink_to(".")
    (loops / "b").symlink_to(".")
    (plugins / "self").symlink_to(plugins)
    (plugins / "up").symlink_to("..")
    before = snapshot(plugins)  # regular files only: FIFOs and links are not read
    api = start_api(processes, plugins, ipc_dir, data, extra="folders: {max_files: 2000, timeout_s: 5}\n")
    loader = api.loader
    fifo = loader.wait_for("plugin.invalid", plugin="fifo")
    assert f"{plugins / 'fifo' / 'pipe'} is a FIFO" in fifo["error"]
    zero = loader.wait_for("plugin.invalid", plugin="zero")
    assert "is a character device (it links to /dev/zero)" in zero["error"]
    loader.wait_for("plugin.running", plugin="loops")
    loader.wait_for("plugin.running", plugin="good")
    loader.wait_for("plugin.invalid", plugin="self")
    loader.wait_for("plugin.invalid", plugin="up")
    assert_serving(api, ["good", "loops"])
    # a FIFO appearing in a running plugin is an update refused, the old version runs on
    os.mkfifo(plugins / "good" / "late-pipe")
    rejected = loader.wait_for("plugin.update_rejected", plugin="good")
    assert "late-pipe is a FIFO" in rejected["error"]
    assert_serving(api, ["good", "loops"])
    started = time.monotonic()
    assert loader.terminate(timeout=15) == 0  # SIGTERM is not ignored
    assert time.monotonic() - started < 15
    assert not loader.find("task.failed")
    assert snapshot(plugins) == before
