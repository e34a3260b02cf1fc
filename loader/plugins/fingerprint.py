"""Has a plugin folder changed since the loader last looked at it?

The periodic rescan visits every folder every ``watch.rescan_s``.  Reading
each manifest (and validating it) every time kept an idle device busy, so
the rescan first compares a stat fingerprint of the folder with the one
taken at the last look that reached a settled outcome; only a difference
makes it read anything.  The fingerprint covers the folder itself and every
content file (the files the digest covers) by inode, size, modification
and change time and mode: ``ctime`` cannot be set by a program, so even a
copy that preserves modification times (``cp -a``, ``tar``) shows, and a
folder replaced by a rename has a new inode.

A settled outcome is one that cannot change while the folder does not: the
folder's version runs, or it was found invalid.  Outcomes that can clear by
themselves (waiting for a copy to finish, a socket held by another process,
a symbol another plugin provides) are not remembered, or are forgotten when
what they depend on changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from loader.config import FolderLimits
from loader.plugins.digest import content_files
from loader.plugins.folders import FolderError

#: Stat data of a folder and of each content file (relative path first), or a refusal (``"!"``, why).
Fingerprint = tuple[tuple[str | int, ...], ...]


def stat_fingerprint(folder: Path, limits: FolderLimits | None = None) -> Fingerprint:
    """Stat data of the folder and its content files; reads no file.

    A folder the walk refuses (a FIFO, a link to a device, past the limits)
    gets the refusal as its fingerprint, so it is looked at (and reported)
    again only when that changes.
    """
    try:
        st = folder.stat()
    except OSError:
        return ()
    parts: list[tuple[str | int, ...]] = [("", st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)]
    try:
        files = content_files(folder, limits)
    except FolderError as exc:
        return (*parts, ("!", str(exc)))
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        parts.append((os.path.relpath(path, folder), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode))
    return tuple(parts)


@dataclass(frozen=True)
class _Look:
    fingerprint: Fingerprint
    #: Digest of the version running after the look; None when nothing ran (the folder was invalid).
    running: str | None


class FolderMemo:
    """The fingerprint and outcome of the last settled look at each folder."""

    def __init__(self) -> None:
        self._looks: dict[str, _Look] = {}

    def unchanged(self, name: str, fingerprint: Fingerprint, running: str | None) -> bool:
        """True when the folder and what runs for it are as the last settled look left them."""
        look = self._looks.get(name)
        return look is not None and bool(fingerprint) and look.fingerprint == fingerprint and look.running == running

    def remember(self, name: str, fingerprint: Fingerprint, running: str | None) -> None:
        self._looks[name] = _Look(fingerprint, running)

    def forget(self, name: str) -> None:
        self._looks.pop(name, None)

    def forget_not_running(self) -> None:
        """Forget folders found invalid: another plugin's change may have made them loadable (a symbol freed)."""
        self._looks = {name: look for name, look in self._looks.items() if look.running is not None}

    def forget_all(self) -> None:
        self._looks.clear()
