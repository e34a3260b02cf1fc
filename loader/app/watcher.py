"""Turning file events into reconcile calls.

File events are only hints: each one names a plugin (the first path component
under the plugins folder), a stream or a rule (``<name>.json``) and restarts
that name's settle timer; when it has been quiet for the settle time, the
reconciler looks at it.  A
folder copied file by file therefore produces one reconcile, not dozens.  A
periodic full rescan (loader/app/changes.py) catches whatever the events missed
(events lost under load, changes inside symlinked folders on file systems
that do not report them).

Only content changes count: creating, writing, closing after a write,
deleting, moving and changing attributes.  Opens, reads and closes without a
write never do: the loader reads the folders it watches, and reacting to its
own reads kept an idle loader reconciling forever.  The filter is given to
watchdog, so on Linux inotify is not even asked for those events.

watchdog calls back on its own thread; the only thing done there is handing
the name to the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from watchdog.events import (
    EVENT_TYPE_ATTRIB,
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from loader.app.changes import FolderEvents
from loader.log import get_logger
from loader.tasks import Backoff, report_failure

#: The watcher's handlers wait on watchdog's own thread: short, so events are not held up for long.
WATCHER_BACKOFF_MAX_S = 1.0


NameOf = Callable[[Path], "str | None"]


#: Events that can mean the content changed ("closed" is a close after writing).
CONTENT_EVENT_TYPES = frozenset(
    {
        EVENT_TYPE_CREATED,
        EVENT_TYPE_MODIFIED,
        EVENT_TYPE_CLOSED,
        EVENT_TYPE_DELETED,
        EVENT_TYPE_MOVED,
        EVENT_TYPE_ATTRIB,
    }
)
#: The same as watchdog event classes, so the observer does not subscribe to the others at all.
CONTENT_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    DirModifiedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileAttribEvent,
    DirAttribEvent,
]


def is_content_change(event: FileSystemEvent) -> bool:
    """Whether an event can mean a file's content, presence, name or attributes changed."""
    return event.event_type in CONTENT_EVENT_TYPES


@contextmanager
def _surviving(task: str, backoff: Backoff, **context: Any) -> Iterator[None]:
    """On watchdog's thread: an exception would end that thread, and with it every later event."""
    try:
        yield
    except Exception as exc:
        time.sleep(report_failure(task, exc, backoff, **context))
    else:
        backoff.succeeded()


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, name_of: NameOf, notify: Callable[[str], None]) -> None:
        self._root = root
        self._name_of = name_of
        self._notify = notify
        self._backoff = Backoff(max_s=WATCHER_BACKOFF_MAX_S)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not is_content_change(event):
            return
        with _surviving("watcher", self._backoff, root=str(self._root)):
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                relative = _relative(self._root, raw)
                name = self._name_of(relative) if relative is not None else None
                if name:
                    self._notify(name)


def _relative(root: Path, raw: str | bytes) -> Path | None:
    if not raw:
        return None
    path = Path(raw.decode() if isinstance(raw, bytes) else raw)
    try:
        relative = path.relative_to(root)
    except ValueError:
        return None
    return relative if relative.parts else None


def plugin_name_of(relative: Path) -> str | None:
    """A plugin folder's events all belong to the folder: its first path component."""
    return relative.parts[0]


def json_file_name_of(relative: Path) -> str | None:
    """Streams and rules are ``<name>.json`` files directly in their folder."""
    if len(relative.parts) != 1 or relative.name.startswith(".") or relative.suffix != ".json":
        return None
    return relative.stem


class FolderWatcher:
    """A change source (loader/app/changes.py): tells its folder the name each file event belongs to.

    With ``follow_links``, the targets of symlinked entries are watched too
    and their events mapped back to the link's name (plugin folders may be
    symlinks); ``refresh``, before each rescan, follows links added or
    removed since.
    """

    def __init__(self, root: Path, name_of: NameOf = plugin_name_of, follow_links: bool = False) -> None:
        self.root = root
        self._changed: Callable[[str], None] | None = None
        self._name_of = name_of
        self._follow_links = follow_links
        self._observer = Observer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link_watches: dict[Path, ObservedWatch] = {}

    def start(self, folder: FolderEvents) -> None:
        self._changed = folder.changed
        self._loop = asyncio.get_running_loop()
        self.root.mkdir(parents=True, exist_ok=True)
        self._observer.schedule(
            _Handler(self.root, self._name_of, self._from_thread),
            str(self.root),
            recursive=True,
            event_filter=CONTENT_EVENTS,
        )
        self._observer.start()
        self.refresh()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def refresh(self) -> None:
        """Watch the target of every symlinked entry, mapping its events back to the link's name."""
        if not self._follow_links:
            return
        root = self.root.resolve()
        links = {
            entry: target
            for entry in self.root.iterdir()
            if entry.is_symlink() and entry.is_dir()
            for target in [entry.resolve()]
            if not _overlaps(target, root)
        }
        for link in list(self._link_watches):
            if link not in links:
                self._observer.unschedule(self._link_watches.pop(link))
        for link, target in links.items():
            if link in self._link_watches:
                continue
            handler = _LinkHandler(link.name, self._from_thread)
            try:
                self._link_watches[link] = self._observer.schedule(
                    handler, str(target), recursive=True, event_filter=CONTENT_EVENTS
                )
            except OSError as exc:
                get_logger(plugin=link.name).warning("plugin.watch_failed", error=str(exc))

    def _from_thread(self, name: str) -> None:
        assert self._loop is not None and self._changed is not None
        self._loop.call_soon_threadsafe(self._changed, name)


def _overlaps(target: Path, root: Path) -> bool:
    """A link to the watched folder, into it or to a folder above it (``self -> .``, ``up -> ..``).

    The folder is already watched; watching a folder above it recursively
    would watch the whole tree, the plugins folder included, again.
    """
    return target == root or target.is_relative_to(root) or root.is_relative_to(target)


class _LinkHandler(FileSystemEventHandler):
    def __init__(self, name: str, notify: Callable[[str], None]) -> None:
        self._name = name
        self._notify = notify
        self._backoff = Backoff(max_s=WATCHER_BACKOFF_MAX_S)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not is_content_change(event):
            return
        with _surviving("watcher", self._backoff, plugin=self._name):
            self._notify(self._name)
