"""A cached virtualenv holding the official eKuiper Python SDK.

The compatibility tests run a plugin written against ``ekuiper`` (which pins
``pynng==0.8.1``) next to the loader's own pynng, so the SDK lives in a venv
of its own under ``<repo>/.cache/``.  Building it takes a pip install from
the registry, so it is done once per SDK version and reused.

Two pytest processes may ask for it at the same time (``-n``, or two
checkouts of CI sharing nothing but this folder), so the build runs under a
file lock and is published by renaming a finished directory into place:
nobody ever sees a half-installed venv.  A venv that no longer imports the
SDK (deleted interpreter, interrupted manual edits) is rebuilt.

Failures raise ``EkuiperEnvError`` carrying pip's output: the tests must fail
loudly, never skip, when the SDK cannot be installed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EKUIPER_VERSION = "2.4.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache"
_PROBE = "import ekuiper, pynng; print(pynng.__version__)"


class EkuiperEnvError(RuntimeError):
    """The SDK venv could not be built; the message carries the failing command's output."""


def venv_dir(version: str = EKUIPER_VERSION) -> Path:
    """Where the venv for ``version`` lives; the version is part of the key."""
    return CACHE_DIR / f"ekuiper-venv-{version}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_ekuiper_python(version: str = EKUIPER_VERSION) -> Path:
    """Return the interpreter of a venv with ``ekuiper==version``, building it if needed."""
    target = venv_dir(version)
    if _works(target):
        return venv_python(target)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _locked(CACHE_DIR / f"ekuiper-venv-{version}.lock"):
        # Another process may have finished the build while we waited.
        if _works(target):
            return venv_python(target)
        _build(target, version)
    return venv_python(target)


def _works(venv: Path) -> bool:
    """True when the venv exists and imports the SDK (a broken one gets rebuilt)."""
    python = venv_python(venv)
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, timeout=60)
    return probe.returncode == 0


def _build(target: Path, version: str) -> None:
    """Build in a scratch directory next to the target, then rename it into place.

    A venv records its own absolute path in its scripts, but ``bin/python``
    (all we use) does not depend on it, so renaming after install is safe.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f".build-{target.name}-", dir=CACHE_DIR))
    scratch.chmod(0o755)  # mkdtemp makes it private; a venv is normally world-readable
    try:
        _run([sys.executable, "-m", "venv", str(scratch)], "create the eKuiper SDK venv")
        _run(
            [
                str(venv_python(scratch)),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                f"ekuiper=={version}",
            ],
            f"pip install ekuiper=={version}",
        )
        if target.exists():
            shutil.rmtree(target)
        os.rename(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not _works(target):
        raise EkuiperEnvError(f"venv {target} was built but cannot import ekuiper and pynng")


def _run(args: list[str], what: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise EkuiperEnvError(
            f"could not {what} (exit {result.returncode}): {' '.join(args)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


class _locked:
    """An exclusive ``flock`` on ``path`` for the duration of a ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


if __name__ == "__main__":
    print(ensure_ekuiper_python())
