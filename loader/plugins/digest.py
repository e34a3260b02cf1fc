"""Content digest of a plugin folder.

The digest, not the manifest version, decides whether a plugin changed: a new
executable with the same version string is still a new plugin, and touching a
file without changing it is not.  Hashing every file on every periodic rescan
would be wasteful on a device, so a cheap stat fingerprint (path, size,
mtime, mode) guards a cached content hash.

What the content is, and how it is walked safely (no FIFOs or devices, no
links out of the folder or into a loop, size and count limits), is
``loader/plugins/folders.py``: hidden files, editor backups and Python bytecode
caches are left out; a link that is not followed counts as its link text.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from loader.config import FolderLimits
from loader.plugins.folders import Entry, FolderChanged, FolderError, read_file, walk

#: What the walk saw of each entry: relative path, kind, size, mtime in ns, mode, link target.
_Fingerprint = tuple[tuple[str, str, int, int, int, str], ...]

_cache: dict[Path, tuple[_Fingerprint, str]] = {}


def content_files(folder: Path, limits: FolderLimits | None = None) -> list[Path]:
    """Every regular file that makes up the plugin, sorted; FolderError if the folder is unsafe to read."""
    return [entry.path for entry in walk(folder, limits) if entry.kind == "file"]


def _fingerprint(entries: list[Entry]) -> _Fingerprint:
    return tuple((e.relative, e.kind, e.size, e.mtime_ns, e.mode, e.target) for e in entries)


#: Reads of a folder whose files keep changing under the reader before it gives up.
READ_ATTEMPTS = 3


def folder_digest(folder: Path, limits: FolderLimits | None = None) -> str:
    """sha256 over relative paths, modes and contents; cached while the stat fingerprint holds.

    A file that changes while it is read (a copy in progress) makes the
    folder be read again, so a half-written file never becomes a version.
    FolderError (loader/plugins/folders.py) when the folder holds something unsafe
    to read, or keeps changing.
    """
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return _digest(folder, limits)
        except FolderChanged:
            time.sleep(0.05)
    return _digest(folder, limits)


def _digest(folder: Path, limits: FolderLimits | None) -> str:
    entries = walk(folder, limits)
    fingerprint = _fingerprint(entries)
    cached = _cache.get(folder)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    digest = hashlib.sha256()
    for entry in entries:
        if entry.kind == "link":
            digest.update(entry.relative.encode() + b"\0")
            digest.update(b"l" + entry.target.encode() + b"\0")
            continue
        try:
            data = read_file(entry)
            executable = os.access(entry.path, os.X_OK)
        except FileNotFoundError:
            raise FolderChanged(f"{entry.path} was removed while the folder was read") from None
        except OSError as exc:
            raise FolderError(f"{entry.path}: cannot read it: {exc}; make it readable or remove it") from None
        digest.update(entry.relative.encode() + b"\0")
        digest.update(b"x" if executable else b"-")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    value = digest.hexdigest()
    _cache[folder] = (fingerprint, value)
    return value
