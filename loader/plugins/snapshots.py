"""Immutable snapshots of plugin folders: what a plugin process really runs from.

A plugin folder in ``plugins/portable/`` is the desired state, and people
edit it: a half-copied or half-saved file there must never change the files
a running process reads, and a plugin that writes into its working directory
must not change the folder the loader watches (its digest would change and
the loader would swap it again and again).  So every version runs from a
copy, ``<data_dir>/snapshots/<name>/<digest>/<name>/``, taken when the
version is about to start.  The copy holds exactly the files the digest
covers; on file systems with reflinks (btrfs, XFS) a copy shares the data
blocks and costs almost nothing.

The snapshots of the last ``updates.snapshots_kept`` versions that passed
probation are kept (a ``.good`` marker next to the copy, its mtime telling
which is newest): they are what a failed update rolls back to.  Others are
removed once no process uses them.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from loader.plugins.digest import content_files
from loader.plugins.manifest import PluginSpec, load_plugin

#: ioctl(2) request that makes ``dst`` share ``src``'s data blocks (Linux FICLONE).
FICLONE = 0x40049409
GOOD_MARKER = ".good"


def copy_file(src: Path, dst: Path) -> None:
    """Copy contents and mode; a reflink where the file system supports it, else a plain copy."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        except OSError:
            shutil.copyfileobj(fin, fout, 1 << 20)
    shutil.copymode(src, dst)


def copy_content(folder: Path, target: Path) -> None:
    """Copy the files that make up a plugin (loader/plugins/digest.py's selection) into ``target``."""
    for path in content_files(folder):
        relative = path.relative_to(folder)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        copy_file(path, destination)


class SnapshotStore:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep
        #: Snapshots taken and not yet handed to a supervisor: never pruned.
        self._pinned: set[Path] = set()

    def take(self, spec: PluginSpec) -> PluginSpec:
        """A copy of ``spec``'s folder, read back as a spec of its own (so its digest is what was copied).

        A folder that changed while it was copied yields a snapshot with a
        different digest than ``spec``; the next reconcile sees the folder
        differ and takes another.  ManifestError if the copy is not a valid
        plugin (the folder was half-written).
        """
        plugin_root = self.root / spec.name
        plugin_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".taking-", dir=plugin_root))
        try:
            copy_content(spec.folder, staging / spec.name)
            copied = load_plugin(staging / spec.name)
            relative = copied.executable.relative_to((staging / spec.name).resolve())
            home = plugin_root / copied.digest[:16]
            if not home.exists():
                os.rename(staging, home)
            self._pinned.add(home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        folder = home / spec.name
        return dataclasses.replace(copied, folder=folder, executable=(folder / relative).resolve(), source=spec.folder)

    def release(self, spec: PluginSpec) -> None:
        """``spec`` (from ``take``) is now used by a supervisor, or not at all: it may be pruned when unused."""
        self._pinned.discard(spec.folder.parent)

    def mark_good(self, spec: PluginSpec, in_use: set[Path]) -> None:
        """``spec`` passed probation: keep it as a rollback target, drop snapshots beyond ``keep``."""
        home = spec.folder.parent
        if home.parent.parent != self.root:
            return  # not a snapshot (run straight from its folder)
        (home / GOOD_MARKER).touch()
        self.prune(spec.name, {p.parent for p in in_use})

    def prune(self, name: str, in_use: set[Path]) -> list[Path]:
        """Remove this plugin's snapshots that are neither among the newest good ones nor in use."""
        plugin_root = self.root / name
        if not plugin_root.is_dir():
            return []
        homes = [p for p in plugin_root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        good = sorted(
            (p for p in homes if (p / GOOD_MARKER).exists()),
            key=lambda p: (p / GOOD_MARKER).stat().st_mtime_ns,
            reverse=True,
        )
        keep = set(good[: self.keep]) | in_use | self._pinned
        removed = [p for p in homes if p not in keep]
        for home in removed:
            shutil.rmtree(home, ignore_errors=True)
        return removed

    def good(self, name: str) -> list[Path]:
        """This plugin's kept good snapshot folders, newest first."""
        plugin_root = self.root / name
        if not plugin_root.is_dir():
            return []
        homes = [p for p in plugin_root.iterdir() if (p / GOOD_MARKER).exists()]
        homes.sort(key=lambda p: (p / GOOD_MARKER).stat().st_mtime_ns, reverse=True)
        return [home / name for home in homes]
