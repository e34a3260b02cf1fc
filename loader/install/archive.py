"""Fetching a plugin zip and unpacking it without trusting it.

A zip names its own paths, modes and link targets, so each entry is checked
before anything is written: no absolute paths, no ``..``, no entry below a
link, no link that leaves the folder or points at a directory (a directory
link can make the folder infinite to walk), and a size limit on the archive
and on what it unpacks to, counted on the bytes really written (a header can
lie).  Every refusal is an ``ArchiveError`` naming the entry.

All of it is blocking file and network I/O: callers run it in a thread.
A download has one deadline for all of it (connect, headers, body): a
socket timeout alone is per read, and a server sending one byte every few
seconds never trips it.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from loader.files import STORAGE_ERRNOS
from loader.jsonio import loads

CHUNK = 64 * 1024
MAX_ENTRIES = 10_000
MAX_LINK_TARGET = 1024
DOWNLOAD_TIMEOUT_S = 120.0
_DRIVE = re.compile(r"^[A-Za-z]:")


class WriteError(OSError):
    """Writing on the loader's side failed (permissions, read-only or full disk): not the archive's fault.

    It passes through every handler here so the API answers with the path
    and the fix (loader/api/errors.py, ``storage_error``).
    """


def _write_error(exc: OSError, path: Path) -> WriteError:
    return WriteError(exc.errno, exc.strerror, str(exc.filename or path))


class ArchiveError(Exception):
    """The archive cannot be installed; ``code`` is the REST error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _megabytes(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MiB"


# ------------------------------------------------------------------ fetch


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s): a server must not redirect the loader to ftp or a file."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(
                newurl, code, f"redirect to {newurl!r} refused (http and https only)", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Deadline:
    """One download's time limit: when it passes, every socket of the download is shut down.

    Shutting a socket down wakes a thread blocked reading it, wherever it is
    (connecting, reading headers, reading the body), so a trickling server
    cannot hold a download, or the thread running it, past the deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def remaining(self) -> float:
        return max(0.001, self.expires - time.monotonic())

    def create_connection(
        self,
        address: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        """``socket.create_connection`` for http.client, watched by this deadline."""
        limit = self.remaining() if timeout is None else min(timeout, self.remaining())
        sock = socket.create_connection(address, limit, source_address)
        with self._lock:
            watched = sock.dup()  # TLS detaches ``sock``; a duplicate still reaches the connection
            self._sockets.append(watched)
            if self.expired:
                _shut(watched)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _deadline_handlers(deadline: Deadline) -> list[urllib.request.BaseHandler]:
    """http and https handlers whose connections are created through ``deadline``."""

    def watched(connection_class: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
        def create(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            connection = connection_class(host, **kwargs)
            # http.client's private hook for opening the socket: the one place every connection goes through.
            connection._create_connection = deadline.create_connection  # type: ignore[attr-defined]
            return connection

        return create

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(watched(http.client.HTTPConnection), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            context = getattr(self, "_context", None)  # the handler's TLS context (private in urllib)
            return self.do_open(watched(http.client.HTTPSConnection), req, context=context)

    return [Http(), Https()]


def fetch(url: str, dest: Path, limit: int, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Copy the zip at ``url`` (``file://``, ``http://``, ``https://``) to ``dest``, at most ``limit`` bytes.

    A download from http(s) must be complete within ``timeout_s`` in all.
    """
    try:
        _fetch(url, dest, limit, timeout_s)
    except ValueError as exc:  # odd characters in a path or host name (NUL, bad IDNA, ...)
        raise ArchiveError("bad_url", f"file {url!r} cannot be used: {exc}") from None


def _fetch(url: str, dest: Path, limit: int, timeout_s: float) -> None:
    if not isinstance(url, str) or not url:
        raise ArchiveError("bad_url", "file must be a URL: file:///path/plugin.zip or http(s)://host/plugin.zip")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ArchiveError("bad_url", f"file {url!r} is not a valid URL: {exc}") from None
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ArchiveError(
                "bad_url", f"file URL {url!r} names host {parts.netloc!r}; use file:///absolute/path.zip"
            )
        path = Path(unquote(parts.path))
        if not path.is_absolute():
            raise ArchiveError("bad_url", f"file URL {url!r} needs an absolute path: file:///absolute/path.zip")
        try:
            if not path.exists():  # eKuiper's words
                raise ArchiveError(
                    "download_failed", f"fail to download file {url}: stat {path}: no such file or directory"
                )
            if not path.is_file():
                raise ArchiveError("download_failed", f"{path} on the loader's host is not a file")
            if path.stat().st_size > limit:
                raise ArchiveError(
                    "archive_too_large",
                    f"{path} is {path.stat().st_size} bytes, over the limit of "
                    f"{_megabytes(limit)} (rest_max_upload_mb)",
                )
            with open(path, "rb") as source:
                _copy_limited(source, dest, limit, url)
        except WriteError:
            raise
        except OSError as exc:
            raise ArchiveError("download_failed", f"cannot read {path}: {exc.strerror or exc}") from None
        return
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ArchiveError(
            "bad_url", f"unsupported URL {url!r}: use file:///path/plugin.zip or http(s)://host/plugin.zip"
        )
    request = urllib.request.Request(url, headers={"User-Agent": "portable-loader"})
    with Deadline(timeout_s) as deadline:
        opener = urllib.request.build_opener(_HttpOnlyRedirects, *_deadline_handlers(deadline))
        try:
            with opener.open(request, timeout=timeout_s) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > limit:
                    raise ArchiveError(
                        "archive_too_large",
                        f"{url} is {length} bytes, over the limit of {_megabytes(limit)} (rest_max_upload_mb)",
                    )
                _copy_limited(response, dest, limit, url)
        except WriteError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            if deadline.expired:
                raise ArchiveError(
                    "download_timeout",
                    f"downloading {url} took longer than {timeout_s:g}s (limits.download_timeout_s); it was cut off",
                ) from None
            if isinstance(exc, urllib.error.HTTPError):
                raise ArchiveError(
                    "download_failed", f"downloading {url} failed: HTTP {exc.code} {exc.reason}"
                ) from None
            reason = getattr(exc, "reason", None) or exc
            raise ArchiveError("download_failed", f"downloading {url} failed: {reason}") from None
        if deadline.expired:  # the cut-off socket may read as a normal end of file
            raise ArchiveError(
                "download_timeout",
                f"downloading {url} took longer than {timeout_s:g}s (limits.download_timeout_s); it was cut off",
            )


def _copy_limited(source: IO[bytes], dest: Path, limit: int, url: str) -> None:
    written = 0
    try:
        out = open(dest, "wb")
    except OSError as exc:
        raise _write_error(exc, dest) from None
    with out:
        while True:
            chunk = source.read(CHUNK)
            if not chunk:
                return
            written += len(chunk)
            if written > limit:
                raise ArchiveError(
                    "archive_too_large", f"{url} is over the limit of {_megabytes(limit)} (rest_max_upload_mb)"
                )
            try:
                out.write(chunk)
            except OSError as exc:
                raise _write_error(exc, dest) from None


# ---------------------------------------------------------------- extract


def extract(archive: Path, dest: Path, name: str, limit: int) -> None:
    """Unpack ``archive`` into the existing, empty folder ``dest`` after checking every entry.

    Files sit at the root of the zip (what ``portable-loader package`` writes)
    or, tolerated, all under one top folder named like the plugin.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveError("bad_archive", f"the file is not a readable zip archive: {exc}") from None
    with zf:
        entries = _plan(zf.infolist(), name, limit)
        links: list[tuple[zipfile.ZipInfo, list[str], str]] = []
        written = 0
        for info, parts, kind in entries:
            target = dest.joinpath(*parts)
            if kind == "dir":
                _mkdir(target, info.filename)
            elif kind == "file":
                _mkdir(target.parent, info.filename)
                written = _write_file(zf, info, target, written, limit)
            else:
                links.append((info, parts, _link_target(zf, info)))
        for info, parts, link_target in links:
            target = dest.joinpath(*parts)
            _mkdir(target.parent, info.filename)
            try:
                os.symlink(link_target, target)
            except OSError as exc:
                raise ArchiveError("bad_archive", f"entry {info.filename!r}: cannot create the link: {exc}") from None
        for info, parts, link_target in links:
            _check_link(dest, dest.joinpath(*parts), info.filename, link_target)
        modeless = {"/".join(parts) for info, parts, kind in entries if kind == "file" and not info.external_attr >> 16}
        _executable_runnable(dest, name, modeless)


def _executable_runnable(dest: Path, name: str, modeless: set[str]) -> None:
    """Give the manifest's executable mode 0755 when its entry carried no mode bits.

    Zips made on Windows, or by tools that store no Unix attributes, have
    none; eKuiper accepts them, and a compiled plugin would otherwise not be
    runnable (every such file gets 0644).  A manifest that cannot be read here
    is left to the manifest check, which reports it precisely.
    """
    if not modeless:
        return
    try:
        manifest = loads((dest / f"{name}.json").read_bytes())
    except (OSError, ValueError, RecursionError):
        return
    executable = manifest.get("executable") if isinstance(manifest, dict) else None
    if not isinstance(executable, str):
        return
    key = "/".join(part for part in executable.replace("\\", "/").split("/") if part not in ("", "."))
    if key in modeless:
        os.chmod(dest / key, 0o755)


def _plan(infos: list[zipfile.ZipInfo], name: str, limit: int) -> list[tuple[zipfile.ZipInfo, list[str], str]]:
    """Check every entry's name, kind and declared size; return (info, path parts, kind) in order."""
    if len(infos) > MAX_ENTRIES:
        raise ArchiveError("archive_too_large", f"the archive has {len(infos)} entries, more than {MAX_ENTRIES}")
    names = [i.filename for i in infos]
    top = f"{name}/"
    prefix = top if f"{name}.json" not in names and names and all(n.startswith(top) for n in names) else ""
    plan: list[tuple[zipfile.ZipInfo, list[str], str]] = []
    seen: dict[str, str] = {}
    declared = 0
    for info in infos:
        raw = info.filename
        _check_entry_name(raw)
        relative = raw[len(prefix) :]
        if not relative.strip("/"):
            continue
        parts = relative.rstrip("/").split("/")
        if any(part == ".." for part in parts):
            raise ArchiveError("path_traversal", f"entry {raw!r} climbs out of the plugin folder with '..'")
        if any(part in ("", ".") for part in parts):
            raise ArchiveError("bad_entry_name", f"entry {raw!r} has an empty or '.' path component")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            kind = "link"
        elif info.is_dir() or stat.S_ISDIR(mode):
            kind = "dir"
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # permission bits alone (no type) are a file
            raise ArchiveError("bad_entry_type", f"entry {raw!r} is neither a file, a folder nor a link")
        else:
            kind = "file"
        key = "/".join(parts)
        if key in seen:
            raise ArchiveError("bad_archive", f"entry {raw!r} appears twice in the archive")
        seen[key] = kind
        declared += info.file_size
        if declared > limit:
            raise ArchiveError(
                "archive_too_large",
                f"the archive unpacks to more than {_megabytes(limit)} (reached at entry {raw!r}; rest_max_upload_mb)",
            )
        plan.append((info, parts, kind))
    if not plan:
        raise ArchiveError("bad_archive", "the archive is empty")
    for info, parts, _kind in plan:  # in any order: a link entry may come after what lies below it
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if seen.get(above) in ("link", "file"):
                code = "link_out" if seen[above] == "link" else "bad_archive"
                raise ArchiveError(
                    code, f"entry {info.filename!r} lies below {above!r}, which is a {seen[above]}, not a folder"
                )
    return plan


def _check_entry_name(raw: str) -> None:
    if any(ord(c) < 32 or c == "\x7f" for c in raw):
        raise ArchiveError("bad_entry_name", f"entry {raw!r} has a control character in its name")
    if "\\" in raw:
        raise ArchiveError("bad_entry_name", f"entry {raw!r} uses '\\' in its path; zip paths use '/'")
    if raw.startswith("/") or _DRIVE.match(raw):
        raise ArchiveError(
            "absolute_path", f"entry {raw!r} is an absolute path; paths must be relative to the plugin folder"
        )


def _mkdir(path: Path, entry: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise _write_error(exc, path) from None
        raise ArchiveError(
            "bad_archive", f"entry {entry!r}: cannot create folder {path.name!r}: {exc.strerror or exc}"
        ) from None


def _write_file(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written: int, limit: int) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise _write_error(exc, target) from None
        raise ArchiveError("bad_archive", f"entry {info.filename!r}: cannot create it: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as source:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > limit:
                    raise ArchiveError(
                        "archive_too_large",
                        f"the archive unpacks to more than {_megabytes(limit)} "
                        f"(reached at entry {info.filename!r}; rest_max_upload_mb)",
                    )
                out.write(chunk)
    except ArchiveError:
        raise
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise _write_error(exc, target) from None
        raise ArchiveError("bad_archive", f"entry {info.filename!r} cannot be read: {exc}") from None
    except Exception as exc:  # bad CRC, encryption, unsupported compression, truncated data
        raise ArchiveError("bad_archive", f"entry {info.filename!r} cannot be read: {exc}") from None
    mode = (info.external_attr >> 16) & 0o777
    # Keep the owner's bits (an executable stays executable); nobody else may write; no setuid/setgid.
    os.chmod(target, ((mode or 0o644) | 0o600) & 0o755)
    return written


def _link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    raw = info.filename
    if info.file_size > MAX_LINK_TARGET:
        raise ArchiveError("bad_archive", f"entry {raw!r} is a link with a target over {MAX_LINK_TARGET} bytes")
    try:
        target = zf.read(info).decode("utf-8")
    except Exception as exc:
        raise ArchiveError("bad_archive", f"entry {raw!r} is a link whose target cannot be read: {exc}") from None
    if not target or "\x00" in target:
        raise ArchiveError("bad_archive", f"entry {raw!r} is a link with an empty or invalid target")
    if os.path.isabs(target):
        raise ArchiveError(
            "link_out",
            f"entry {raw!r} is a link to the absolute path {target!r}; links must stay inside the plugin folder",
        )
    parent = os.path.dirname(raw.rstrip("/"))
    if os.path.normpath(os.path.join(parent, target)).split(os.sep)[0] == "..":
        raise ArchiveError("link_out", f"entry {raw!r} is a link to {target!r}, outside the plugin folder")
    return target


def _check_link(root: Path, link: Path, entry: str, target: str) -> None:
    """The link, as the file system resolves it, must name a file inside ``root``."""
    resolved = Path(os.path.realpath(link))
    if not resolved.is_relative_to(Path(os.path.realpath(root))):
        raise ArchiveError(
            "link_out", f"entry {entry!r} is a link to {target!r}, which resolves outside the plugin folder"
        )
    if resolved.is_dir():
        raise ArchiveError(
            "link_to_directory",
            f"entry {entry!r} is a link to the folder {target!r}; only links "
            "to files are accepted (folder links can loop)",
        )
    if not resolved.is_file():
        raise ArchiveError("link_out", f"entry {entry!r} is a link to {target!r}, which is not in the archive")


def remove_tree(path: Path) -> None:
    """Remove a folder we own (or just the link, if ``path`` is a symlink to a folder we do not)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
