"""Reading a plugin folder into a validated, fingerprinted PluginSpec.

A plugin folder is the desired state of one plugin.  This module turns it into
a ``PluginSpec`` (manifest, content digest, resolved executable) or a
``ManifestError`` that names the file, the JSON pointer of the fault and what
to do about it.  It never touches running processes: the reconciler decides
what to do with the result.

Checks, in order: the folder name; the manifest file exists and is JSON; the
manifest matches ``schema/plugin.schema.json``; then the semantic checks the
schema cannot express (name equals the folder, at least one symbol, the
executable exists inside the folder and is executable).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from loader import jsonio
from loader.config import FolderLimits
from loader.jsonschemas import load_schema
from loader.names import is_valid_name
from loader.plugins.digest import folder_digest
from loader.plugins.folders import MAX_DEFINITION_BYTES, FolderError, read_regular
from loader.plugins.pycheck import first_syntax_error

#: The top-level ``schema/`` folder, installed as the package ``loader.schemas`` (pyproject.toml maps it),
#: so the schemas are found the same way from a checkout, an editable install and a wheel.
SYMBOL_KINDS = ("sources", "sinks", "functions")


@dataclass(frozen=True)
class ManifestError(Exception):
    """A plugin folder that cannot be loaded, said precisely enough to fix it.

    ``incomplete`` marks faults that a folder still being copied would show
    (no manifest yet, no executable yet), so the reconciler can wait a while
    before calling them errors.
    """

    file: str
    pointer: str
    message: str
    fix: str
    incomplete: bool = False
    #: The manifest's version, when the fault was found after the manifest was read.
    version: str | None = None

    def __str__(self) -> str:
        where = f"{self.file} at {self.pointer}" if self.pointer else self.file
        return f"{where}: {self.message}; {self.fix}"


@dataclass(frozen=True)
class PluginSpec:
    """A validated plugin folder: what the loader should be running for this name."""

    name: str
    folder: Path
    manifest: dict[str, Any]
    digest: str
    executable: Path
    warnings: tuple[str, ...] = field(default=())
    #: The interpreter of the plugin's own venv, once built (loader/plugins/venvs.py).
    python: Path | None = None
    #: For a snapshot (loader/plugins/snapshots.py): the watched folder it was copied from.
    source: Path | None = None

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def language(self) -> str:
        return str(self.manifest["language"])

    def symbols(self, kind: str) -> list[str]:
        """Symbol names of one kind: ``sources``, ``sinks`` or ``functions``."""
        return list(self.manifest.get(kind) or [])


@cache
def manifest_path(folder: Path) -> Path:
    return folder / f"{folder.name}.json"


def load_plugin(folder: Path, limits: FolderLimits | None = None, strict: bool = False) -> PluginSpec:
    """Read and validate one plugin folder; raise ManifestError on any fault.

    Blocking file I/O, bounded by ``limits`` (loader/plugins/folders.py): the
    reconciler calls it off the event loop. ``strict`` makes an unknown
    manifest key an error instead of a warning.
    """
    name = folder.name
    if not is_valid_name(name):
        raise ManifestError(
            str(folder),
            "",
            f"folder name {name!r} is not a valid plugin name",
            "rename it to 1-64 letters, digits, '_' or '-', starting with a letter or digit",
        )
    path = manifest_path(folder)
    manifest = _read_json(path)
    warnings = _check_schema(path, manifest, strict)
    _check_semantics(path, folder, manifest)
    executable = _check_executable(path, folder, manifest)
    digest = _digest(folder, limits)
    if manifest["language"] == "python":
        _check_compiles(folder, executable, str(manifest["version"]), limits)
    return PluginSpec(
        name=name,
        folder=folder,
        manifest=manifest,
        digest=digest,
        executable=executable,
        warnings=tuple(warnings),
    )


def _digest(folder: Path, limits: FolderLimits | None) -> str:
    try:
        return folder_digest(folder, limits)
    except FolderError as exc:
        raise ManifestError(str(folder), "", str(exc), "the folder was not loaded") from None


def _read_manifest_text(path: Path) -> str:
    """The manifest's text; a FIFO, device or oversized file is an OSError with the reason."""
    try:
        return read_regular(path, MAX_DEFINITION_BYTES).decode("utf-8")
    except FolderError as exc:
        raise OSError(str(exc)) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = _read_manifest_text(path)
    except FileNotFoundError:
        raise ManifestError(
            str(path),
            "",
            "manifest file is missing",
            f"add {path.name} (the folder name plus .json) to the plugin folder",
            incomplete=True,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), "", f"cannot read manifest: {exc}", "make it a readable UTF-8 file") from None
    try:
        data = jsonio.loads(text, strict=True)
    except jsonio.JsonError as exc:
        raise ManifestError(str(path), "", f"not valid JSON: {exc}", "fix the JSON") from None
    if not isinstance(data, dict):
        raise ManifestError(str(path), "", "the manifest must be a JSON object", "wrap the keys in { }")
    return data


def _check_schema(path: Path, manifest: dict[str, Any], strict: bool = False) -> list[str]:
    schema = load_schema("plugin.schema.json")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        pointer = _pointer(first.absolute_path)
        raise ManifestError(str(path), pointer, first.message, _fix_for(first))
    known = sorted(schema["properties"])
    unknown = [key for key in manifest if key not in known]
    if strict and unknown:
        key = unknown[0]
        raise ManifestError(str(path), _pointer([key]), f"unknown key {key!r}", _unknown_key_fix(key, known))
    return [f"{path}: unknown key {key!r} is ignored; {_unknown_key_fix(key, known)}" for key in unknown]


def _unknown_key_fix(key: str, known: list[str]) -> str:
    """Suggest the nearest known key (a typo like "sourcse"), else list them all."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known keys: {', '.join(known)}"


def _pointer(parts: Any) -> str:
    """RFC 6901 JSON pointer of a schema error's location."""
    escaped = [str(p).replace("~", "~0").replace("/", "~1") for p in parts]
    return "/" + "/".join(escaped) if escaped else "/"


def _fix_for(error: jsonschema.ValidationError) -> str:
    """A short instruction matching the kind of schema fault."""
    hints = {
        "required": "add the missing key",
        "type": f"use a value of type {error.validator_value}",
        "pattern": "use 1-64 letters, digits, '_' or '-', starting with a letter or digit",
        "enum": f"use one of {error.validator_value}",
        "minLength": "give a non-empty value",
        "uniqueItems": "remove the duplicate entry",
        "dependentRequired": "add the key it depends on",
    }
    return hints.get(str(error.validator), "see schema/plugin.schema.json")


def _check_compiles(folder: Path, executable: Path, version: str, limits: FolderLimits | None) -> None:
    """A Python plugin whose code does not compile is refused before anything is stopped.

    Called after the digest, so the folder's walk already refused special
    files and enforced the limits; the sources are read the same safe way.
    """
    try:
        found = first_syntax_error(folder, executable, limits)
    except FolderError as exc:
        raise ManifestError(str(folder), "", str(exc), "the folder was not loaded", version=version) from None
    if found is not None:
        source, error = found
        raise ManifestError(str(source), "", error, f"fix {source.name} and save it again", version=version)


def _check_semantics(path: Path, folder: Path, manifest: dict[str, Any]) -> None:
    declared = manifest.get("name")
    if declared is not None and declared != folder.name:
        raise ManifestError(
            str(path),
            "/name",
            f"name {declared!r} differs from the folder name {folder.name!r}",
            f"rename the folder to {declared!r} or set name to {folder.name!r}",
        )
    if not any(manifest.get(kind) for kind in SYMBOL_KINDS):
        raise ManifestError(
            str(path),
            "/",
            "the plugin declares no symbol",
            "list at least one name under sources, sinks or functions",
        )


def _check_executable(path: Path, folder: Path, manifest: dict[str, Any]) -> Path:
    relative: str = manifest["executable"]  # the schema made it a string
    if os.path.isabs(relative):
        raise ManifestError(
            str(path),
            "/executable",
            f"executable {relative!r} is an absolute path",
            "give a path relative to the plugin folder",
        )
    candidate = folder / relative
    resolved = candidate.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise ManifestError(
            str(path),
            "/executable",
            f"executable {relative!r} resolves to {resolved}, outside the plugin folder",
            "keep the program (and any symlink target) inside the plugin folder",
        )
    if resolved.is_dir():
        raise ManifestError(
            str(path),
            "/executable",
            f"executable {relative!r} is a directory, not a program",
            "point executable at the program file inside it",
        )
    if resolved.exists() and not resolved.is_file():
        raise ManifestError(
            str(path),
            "/executable",
            f"executable {relative!r} is not a regular file",
            "point executable at the program file",
        )
    if not resolved.is_file():
        raise ManifestError(
            str(path),
            "/executable",
            f"executable {relative!r} does not exist in {folder}",
            f"copy {relative} into the plugin folder or fix the executable key",
            incomplete=True,
        )
    if manifest["language"] != "python" and not os.access(resolved, os.X_OK):
        raise ManifestError(
            str(path),
            "/executable",
            f"executable {relative!r} is not executable",
            f"run chmod +x on {relative}",
        )
    return resolved
