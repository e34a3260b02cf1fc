"""Walking a plugin folder without trusting it.

A plugin folder is written by whoever can write to the plugins directory (or
unpacked from a zip), and the loader reads all of it for the digest.  A
naive walk can be made to hang or to exhaust memory: a FIFO blocks ``read``
forever, a link to ``/dev/zero`` never ends, and two links ``a -> .`` and
``b -> .`` make ``os.walk(followlinks=True)`` walk an exponential tree.

So the walk here:

- reads only regular files and enters only real directories, each (by
  device and inode) once;
- follows a link only to a regular file inside the folder; a link to a
  directory is never followed (whatever it points at inside the folder is
  walked under its own name anyway), so no link leads out or into a loop;
  a link it does not follow is part of the content as its link text;
- refuses FIFOs, sockets and devices, also as a link's target, with a
  ``FolderError`` naming the path;
- stops with a ``FolderError`` past ``max_files`` entries or ``max_bytes``
  of file content (``FolderLimits``, configurable under ``folders`` in
  etc/loader.yaml).

Files opened for reading are opened non-blocking and checked again with
``fstat``, so a file swapped for a FIFO after the walk saw it cannot block.
It is still blocking file I/O: the reconciler runs it off the event loop
with a timeout (``FolderLimits.timeout_s``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loader.config import FolderLimits


class FolderError(Exception):
    """A plugin folder that cannot be read safely; the message names the path and the fix."""


@dataclass(frozen=True)
class Entry:
    """One piece of a folder's content.

    ``kind`` is ``file`` (a regular file, possibly reached through a link
    inside the folder) or ``link`` (a link not followed: its ``target`` text
    is the content).
    """

    relative: str
    path: Path
    kind: str
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    target: str = ""


def ignored(name: str) -> bool:
    """Not the plugin's content: hidden files, editor backups, Python bytecode caches."""
    return name.startswith(".") or name.endswith("~") or name == "__pycache__" or name.endswith(".pyc")


def walk(folder: Path, limits: FolderLimits | None = None) -> list[Entry]:
    """Every entry of the folder's content, in a stable order; FolderError on anything unsafe."""
    limits = limits or FolderLimits()
    root = folder.resolve()
    try:
        root_stat = root.stat()
    except OSError as exc:
        raise FolderError(f"{folder}: cannot read the folder: {exc}") from None
    if not stat.S_ISDIR(root_stat.st_mode):
        raise FolderError(f"{folder}: not a directory")
    walker = _Walker(folder, root, limits)
    walker.seen.add((root_stat.st_dev, root_stat.st_ino))
    return list(walker.entries(folder, ""))


class _Walker:
    def __init__(self, folder: Path, root: Path, limits: FolderLimits) -> None:
        self.folder = folder
        self.root = root
        self.limits = limits
        self.seen: set[tuple[int, int]] = set()
        self.count = 0
        self.total = 0

    def entries(self, directory: Path, prefix: str) -> Iterator[Entry]:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise FolderError(f"{directory}: cannot list the directory: {exc}") from None
        for name in names:
            if ignored(name):
                continue
            self._count(directory / name)
            yield from self._entry(directory / name, prefix + name)

    def _entry(self, path: Path, relative: str) -> Iterator[Entry]:
        try:
            own = os.lstat(path)
        except FileNotFoundError:
            return  # removed while we walk: the next reconcile sees the new state
        except OSError as exc:
            raise FolderError(f"{path}: cannot read it: {exc}") from None
        if stat.S_ISLNK(own.st_mode):
            yield from self._link(path, relative, own)
            return
        _refuse_special(path, own.st_mode, path)
        if stat.S_ISDIR(own.st_mode):
            if self._first_visit(own):
                yield from self.entries(path, relative + "/")
            return
        yield self._file(path, relative, own)

    def _link(self, path: Path, relative: str, own: os.stat_result) -> Iterator[Entry]:
        target_text = os.readlink(path)
        try:
            target = path.resolve(strict=True)
            st = target.stat()
        except (OSError, RuntimeError):  # dangling, or a loop of links
            yield Entry(relative, path, "link", mode=own.st_mode, target=target_text)
            return
        _refuse_special(path, st.st_mode, target)
        if stat.S_ISREG(st.st_mode) and target.is_relative_to(self.root):
            yield self._file(path, relative, st)
        else:  # a directory, or a file outside the folder: the link itself is the content
            yield Entry(relative, path, "link", mode=own.st_mode, target=target_text)

    def _file(self, path: Path, relative: str, st: os.stat_result) -> Entry:
        self.total += st.st_size
        if self.total > self.limits.max_bytes:
            raise FolderError(
                f"{self.folder}: its files add up to more than {self.limits.max_mb:g} MiB "
                f"(at {path}); remove what the plugin does not need, or raise folders.max_mb"
            )
        return Entry(relative, path, "file", st.st_size, st.st_mtime_ns, st.st_mode)

    def _first_visit(self, st: os.stat_result) -> bool:
        key = (st.st_dev, st.st_ino)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def _count(self, path: Path) -> None:
        self.count += 1
        if self.count > self.limits.max_files:
            raise FolderError(
                f"{self.folder}: more than {self.limits.max_files} entries (at {path}); remove what "
                "the plugin does not need, or raise folders.max_files"
            )


def _refuse_special(path: Path, mode: int, target: Path) -> None:
    """FIFOs, sockets and devices block or never end when read: never part of a plugin."""
    kind = _special_kind(mode)
    if kind is None:
        return
    via = "" if target == path else f" (it links to {target})"
    raise FolderError(
        f"{path} is a {kind}{via}; a plugin folder may hold only regular files, directories "
        "and links to them: remove it"
    )


def _special_kind(mode: int) -> str | None:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return None
    return "special file"


class FolderChanged(FolderError):
    """A file changed between the walk and its read (a copy in progress): read the folder again."""


def read_file(entry: Entry) -> bytes:
    """A walked file's bytes, opened non-blocking and checked again, as it may have changed since the walk.

    FolderChanged when its size or modification time is no longer what the
    walk saw, or it changed while being read.
    """
    data, st = _read_regular(entry.path, None)
    if len(data) != entry.size or st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
        raise FolderChanged(f"{entry.path} changed while it was read; it is read again")
    return data


#: Largest single definition file (manifest, stream, rule, symbol configuration) read.
MAX_DEFINITION_BYTES = 1 << 20


def read_regular(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, or FolderError naming it (a FIFO, a device, larger than ``max_bytes``).

    Opened non-blocking, so a FIFO cannot block the open; the type is
    checked on the open file, so a swap after any earlier check cannot
    fool it.  FileNotFoundError passes through.
    """
    return _read_regular(path, max_bytes)[0]


def _read_regular(path: Path, max_bytes: int | None) -> tuple[bytes, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        kind = _special_kind(st.st_mode) or ("directory" if stat.S_ISDIR(st.st_mode) else None)
        if kind is not None:
            raise FolderError(f"{path} is a {kind}, not a regular file; replace it with a file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise FolderError(f"{path} is {st.st_size} bytes, more than the {max_bytes} accepted for it")
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)
