"""The one shape of every REST error: ``{"error": code, "message": text}``.

Handlers raise ``ApiError``; the application turns it into a JSON response
with its status.  ``code`` is a stable machine-readable word (scripts match
on it), ``message`` names what was wrong and what to do.
"""

from __future__ import annotations

import errno
import getpass
from pathlib import Path

#: errnos that mean "the loader cannot write there", not a bug: answered 503/507 with the path and the fix.
STORAGE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def not_found(what: str, name: str, hint: str = "") -> ApiError:
    return ApiError(404, "not_found", f"{what} {name!r} does not exist" + (f"; {hint}" if hint else ""))


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


def storage_error(exc: OSError) -> ApiError | None:
    """A write refused by the file system as an answer naming the path and the fix (None for other errors).

    Permission and read-only problems are the installation's (503: the
    service cannot do this until someone fixes it); a full disk is 507.
    """
    if exc.errno not in STORAGE_ERRNOS:
        return None
    path = Path(exc.filename) if exc.filename else None
    where = str(path) if path is not None else "a file"
    folder = str(path.parent) if path is not None else "the loader's directories"
    user = _user()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ApiError(507, "disk_full", f"cannot write {where}: no space left on its file system; free space "
                                          f"there (or raise the quota of user {user}) and retry")
    if exc.errno == errno.EROFS:
        return ApiError(503, "read_only", f"cannot write {where}: its file system is read-only for the loader; "
                                          f"point plugins_dir, etc_dir and data_dir at a writable directory (under "
                                          "systemd: below /var/lib/portable-loader, the unit's StateDirectory=, or "
                                          "add the folder to ReadWritePaths=)")
    return ApiError(503, "not_writable", f"cannot write {where}: permission denied for user {user}; make {folder} "
                                         f"writable by it (e.g. chown -R {user} {folder}) or point the setting at "
                                         "a directory the loader owns (docs/operations.md)")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "the loader's user"
