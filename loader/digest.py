"""Content digest of a plugin folder.

The digest, not the manifest version, decides whether a plugin changed: a new
executable with the same version string is still a new plugin, and touching a
file without changing it is not.  Hashing every file on every periodic rescan
would be wasteful on a device, so a cheap stat fingerprint (path, size,
mtime, mode) guards a cached content hash.

Files that are not the plugin's content are left out: hidden files (editor
swap files, ``.git``), editor backups ending in ``~``, and Python bytecode
caches, which the running plugin itself writes into its folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_cache: dict[Path, tuple[tuple, str]] = {}


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith("~") or name == "__pycache__" or name.endswith(".pyc")


def content_files(folder: Path) -> list[Path]:
    """Every file that makes up the plugin, sorted, symlinks followed."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not _ignored(d))
        found.extend(Path(root) / f for f in sorted(files) if not _ignored(f))
    return found


def _fingerprint(folder: Path, files: list[Path]) -> tuple:
    parts = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        parts.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns, st.st_mode))
    return tuple(parts)


def folder_digest(folder: Path) -> str:
    """sha256 over relative paths, modes and contents; cached while the stat fingerprint holds."""
    files = content_files(folder)
    fingerprint = _fingerprint(folder, files)
    cached = _cache.get(folder)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    digest = hashlib.sha256()
    for path in files:
        try:
            data = path.read_bytes()
            executable = os.access(path, os.X_OK)
        except OSError:
            continue
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(b"x" if executable else b"-")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    value = digest.hexdigest()
    _cache[folder] = (fingerprint, value)
    return value
