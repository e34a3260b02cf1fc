"""The one shape of every REST error: ``{"error": code, "message": text}``.

Handlers raise ``ApiError``; the application turns it into a JSON response
with its status.  ``code`` is a stable machine-readable word (scripts match
on it), ``message`` names what was wrong and what to do.
"""

from __future__ import annotations


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
