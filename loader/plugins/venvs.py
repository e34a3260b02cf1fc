"""Per-plugin Python environments built from a plugin's ``requirements.txt``.

A Python plugin folder with a ``requirements.txt`` (and no eKuiper
``virtualEnvType``) runs in a venv of its own, so plugins cannot break each
other with conflicting packages.  Venvs live under ``<data>/venvs/`` named by
a digest of the requirements and the interpreter: a plugin update that keeps
its requirements reuses the venv, and two plugins with identical
requirements share one.

The venv does not see the loader's packages (no ``--system-site-packages``
unless configured), except the ``sdk`` and what it needs (pynng and its
dependencies): a ``.pth`` file appends a small shim folder of links to those,
after the venv's own site-packages, so a plugin that pins its own pynng gets
its own.  Packages come from the configured index, or from a folder of wheels
(``--find-links``) for devices without network.

A venv is built in a hidden temporary folder and renamed into place only when
pip succeeded, so a half-built venv is never used.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loader.config import VenvSettings

REQUIREMENTS = "requirements.txt"
PIP_TAIL_LINES = 15
#: What the shim exposes to plugin venvs: the sdk and its runtime dependencies.
SHIM_MODULES = ("sdk", "pynng", "_cffi_backend", "cffi", "pycparser", "sniffio")


class VenvError(Exception):
    """The venv could not be built; the message ends with the tail of pip's output."""


def wants_venv(folder: Path, manifest: dict[str, Any]) -> bool:
    return (
        manifest.get("language") == "python"
        and not manifest.get("virtualEnvType")
        and (folder / REQUIREMENTS).is_file()
    )


def venv_key(requirements: bytes) -> str:
    interpreter = f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"
    return hashlib.sha256(interpreter.encode() + b"\0" + requirements).hexdigest()[:16]


class VenvBuilder:
    def __init__(self, venvs_dir: Path, settings: VenvSettings | Callable[[], VenvSettings]) -> None:
        self.venvs_dir = venvs_dir
        #: Read at each build, so a reload's new settings apply to the next one.
        self._settings = settings if callable(settings) else (lambda: settings)
        self._locks: dict[str, asyncio.Lock] = {}
        #: Builds that failed, by venv key: not retried on every rescan, only
        #: when the requirements change or after forget_failures() (SIGHUP).
        self._failed: dict[str, str] = {}

    @property
    def settings(self) -> VenvSettings:
        return self._settings()

    def python_for(self, folder: Path) -> Path:
        """Where the venv's interpreter is (built or not) for a plugin folder."""
        key = venv_key((folder / REQUIREMENTS).read_bytes())
        return self.venvs_dir / key / "bin" / "python"

    def is_built(self, folder: Path) -> bool:
        return self.python_for(folder).exists()

    async def ensure(self, folder: Path) -> Path:
        """The interpreter of the plugin's venv, building the venv first if needed."""
        python = self.python_for(folder)
        key = python.parent.parent.name
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._failed:
                raise VenvError(self._failed[key] + " (not retried until requirements.txt changes or SIGHUP)")
            if not python.exists():
                try:
                    await self._build(folder / REQUIREMENTS, python.parent.parent)
                except VenvError as exc:
                    self._failed[key] = str(exc)
                    raise
        return python

    def forget_failures(self) -> None:
        self._failed.clear()

    async def _build(self, requirements: Path, target: Path) -> None:
        self.venvs_dir.mkdir(parents=True, exist_ok=True)
        staging = self.venvs_dir / f".building-{target.name}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            create = [sys.executable, "-m", "venv", "--without-pip", str(staging)]
            if self.settings.system_site_packages:
                create.insert(4, "--system-site-packages")
            await self._run(create, "creating the venv")
            self._link_sdk(staging)
            await self._run(self._pip_command(staging / "bin" / "python", requirements), "pip install")
            # Scripts and the interpreter link point at the staging path; the
            # interpreter finds its prefix from where it is run, so renaming is safe.
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _pip_command(self, python: Path, requirements: Path) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            str(requirements),
        ]
        if self.settings.offline:
            command.append("--no-index")
        elif self.settings.index_url:
            command += ["--index-url", self.settings.index_url]
        for link in self.settings.find_links:
            command += ["--find-links", link]
        return command

    async def _run(self, command: list[str], what: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), self.settings.timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise VenvError(f"{what} took longer than {self.settings.timeout_s:g}s") from None
        if process.returncode != 0:
            tail = output.decode(errors="replace").strip().splitlines()[-PIP_TAIL_LINES:]
            raise VenvError(f"{what} failed (exit code {process.returncode}): " + " | ".join(tail))

    def _link_sdk(self, venv: Path) -> None:
        """Make the loader's sdk (and pynng with its dependencies) importable, after the venv's own packages."""
        shim = self._shim()
        site = next((venv / "lib").glob("python*/site-packages"))
        (site / "portable_loader_sdk.pth").write_text(f"{shim}\n")

    def _shim(self) -> Path:
        shim = self.venvs_dir / f"_sdk-{sys.version_info.major}.{sys.version_info.minor}"
        shim.mkdir(parents=True, exist_ok=True)
        for name in SHIM_MODULES:
            module = importlib.import_module(name)
            assert module.__file__ is not None, f"{name} is a module with a file"
            source = Path(module.__file__)
            if source.name.startswith("__init__."):
                source = source.parent
            link = shim / source.name
            if link.is_symlink() and link.resolve() == source.resolve():
                continue
            link.unlink(missing_ok=True)
            link.symlink_to(source)
        return shim
