"""Portable plugins over REST: views of what runs, and the HTTP side of install/update/delete.

The transaction itself (staging, validation, rollback) is the loader's
plugin installer (loader/install/); here are only what HTTP needs: reading
an uploaded zip from the request body, the plugin as eKuiper lists it, and
the installer's refusals as eKuiper's errors.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request

from loader.api.errors import ApiError, bad_request, not_found
from loader.api.view import LoaderView
from loader.config import LoaderConfig
from loader.install.archive import ArchiveError
from loader.install.errors import InstallsBusy, PluginChangeError, PluginNotFound
from loader.install.installer import Upload, check_plugin_name
from loader.plugins.manifest import SYMBOL_KINDS, PluginSpec

__all__ = ["Upload", "check_plugin_name"]

#: Our states as eKuiper's plugin status words (``running``, ``initializing``, ``error``, ``stop``).
EKUIPER_STATUS = {
    "waiting": "initializing",
    "building": "initializing",
    "starting": "initializing",
    "probation": "running",
    "running": "running",
    "rolled_back": "running",
    "restarting": "error",
    "crashloop": "error",
    "invalid": "error",
    "stopped": "stop",
}


def iso_time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plugin_info(spec: PluginSpec, plugins_dir: Path) -> dict[str, Any]:
    """The manifest as eKuiper lists a portable plugin: name, version, language, executable, symbols.

    ``executable`` is its absolute path in the plugins folder, as eKuiper gives it
    (the process itself runs from a snapshot of that folder).
    """
    info: dict[str, Any] = {"name": spec.name}
    info.update(spec.manifest)
    info["name"] = spec.name
    info["executable"] = str(plugins_dir.absolute() / spec.name / str(spec.manifest.get("executable", "")))
    for kind in SYMBOL_KINDS:
        info[kind] = spec.symbols(kind)
    return info


def plugin_status(view: LoaderView, name: str) -> dict[str, Any] | None:
    status = view.plugin_status(name)
    running = view.running_spec(name)
    if status is None and running is None:
        return None
    state = status.state if status is not None else "loading"
    version = (
        status.version if status is not None and status.version else (running.version if running is not None else None)
    )
    return {
        "refCount": view.ref_count(name),
        "status": EKUIPER_STATUS.get(state, "error"),
        "errMsg": (status.last_error if status is not None else None) or "",
        # the loader's own keys, after eKuiper's
        "name": name,
        "pid": status.pid if status is not None else None,
        "state": state,
        "version": version,
        "previousVersion": status.previous_version if status is not None else None,
        "restarts": status.restarts if status is not None else 0,
        "since": iso_time(status.since if status is not None else None),
        # A version that was refused or failed its probation (and rolled back), until the folder changes.
        "failedVersion": status.failed_version if status is not None else None,
        "failedError": status.failed_error if status is not None else None,
    }


ZIP_TYPES = ("application/zip", "application/octet-stream", "application/x-zip-compressed")


def is_upload(request: Request) -> bool:
    """Our addition to eKuiper's API: the zip itself as the body (``Content-Type: application/zip``)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower() in ZIP_TYPES


async def receive_upload(request: Request, config: LoaderConfig) -> Upload:
    """Write the body to ``plugins_dir/.upload-*.zip``.

    More than ``rest_max_upload_mb`` is refused, as the URL form does.
    """
    limit = int(float(config.rest_max_upload_mb) * 1024 * 1024)
    length = request.headers.get("content-length", "")
    too_large = ArchiveError(
        "archive_too_large", f"the uploaded zip is over the limit of {limit / 1048576:g} MiB (rest_max_upload_mb)"
    )
    if length.isdigit() and int(length) > limit:
        raise bad_request(too_large.code, too_large.message)
    config.plugins_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".zip", dir=config.plugins_dir)
    upload = Upload(Path(name), 0)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                upload.size += len(chunk)
                if upload.size > limit:
                    raise bad_request(too_large.code, too_large.message)
                out.write(chunk)
    except BaseException:
        upload.discard()
        raise
    if upload.size == 0:
        upload.discard()
        raise bad_request("bad_archive", "the request body is empty: send the plugin zip (portable-loader package)")
    return upload


def api_error(exc: PluginChangeError, missing_status: int = 404) -> ApiError:
    """The installer's refusal as eKuiper answers it: 400 with the loader's code word, mostly.

    A plugin that is not there is a 404 for an update and a 400 for a delete
    (eKuiper's statuses); busy download workers are a 503 with ``Retry-After``.
    """
    if isinstance(exc, InstallsBusy):
        return ApiError(503, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, PluginNotFound) and missing_status == 404:
        return not_found(exc.message)
    return bad_request(exc.code, exc.message)
