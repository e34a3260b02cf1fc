"""The one shape of every REST error, eKuiper's: ``{"error": <number>, "message": text}``.

Handlers raise ``ApiError``; the application serves its ``body()`` as
eKuiper does, as ``text/plain``.  ``number`` is eKuiper's error code (1000 a
bad request, 1002 not found, 2201 a sink not defined, 3000 a stream error),
``message`` names what was wrong and what to do, and ``code`` (an extra key
eKuiper does not send, which its clients ignore) is the loader's stable
machine-readable word for scripts that need to tell errors apart.
"""

from __future__ import annotations

import errno
import getpass
from pathlib import Path

from loader.files import STORAGE_ERRNOS

#: eKuiper's error numbers (its errorx codes) the loader answers with.
GENERAL, NOT_FOUND, SINK_UNDEFINED, STREAM_ERROR = 1000, 1002, 2201, 3000


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None, number: int = GENERAL
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.number = number

    def body(self) -> dict[str, object]:
        return {"error": self.number, "message": self.message, "code": self.code}

    def prefixed(self, prefix: str) -> ApiError:
        """The same error as eKuiper words it in a context: ``<prefix>: <message>``."""
        return ApiError(self.status, self.code, f"{prefix}: {self.message}", self.headers, self.number)


def bad_request(code: str, message: str, number: int = GENERAL) -> ApiError:
    return ApiError(400, code, message, number=number)


def not_found(message: str) -> ApiError:
    """eKuiper's 404: its NOT_FOUND number; the message is eKuiper's sentence for the route."""
    return ApiError(404, "not_found", message, number=NOT_FOUND)


def conflict(code: str, message: str, number: int = GENERAL) -> ApiError:
    """Something exists already, or belongs to another plugin: eKuiper answers these 400, and so do we."""
    return ApiError(400, code, message, number=number)


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
        return ApiError(
            507,
            "disk_full",
            f"cannot write {where}: no space left on its file system; free space "
            f"there (or raise the quota of user {user}) and retry",
        )
    if exc.errno == errno.EROFS:
        return ApiError(
            503,
            "read_only",
            f"cannot write {where}: its file system is read-only for the loader; "
            f"point plugins_dir, etc_dir and data_dir at a writable directory (under "
            "systemd: below /var/lib/portable-loader, the unit's StateDirectory=, or "
            "add the folder to ReadWritePaths=)",
        )
    return ApiError(
        503,
        "not_writable",
        f"cannot write {where}: permission denied for user {user}; make {folder} "
        f"writable by it (e.g. chown -R {user} {folder}) or point the setting at "
        "a directory the loader owns (docs/operations.md)",
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "the loader's user"
