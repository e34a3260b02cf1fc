"""The checkout as a user receives it, and a wheelhouse to install it offline.

The wheel is built from the files git tracks (copied out of the checkout, so
the build leaves nothing behind in it and untracked files cannot leak into
the artefact).  Its runtime dependencies are downloaded on the host for the
container's interpreter (CPython 3.11 on Debian bookworm's glibc), exactly
those the runtime lock pins, with their hashes checked: the documented
install (``pip install --require-hashes -r requirements/runtime.txt``) then
finds all of them offline.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from tests.system.docs import LOCK

# Python and glibc of Debian bookworm, the container's distribution.
TARGET_PYTHON = "3.11"
TARGET_ABI = "cp311"
TARGET_GLIBC = "2_36"


def export_checkout(repo: Path, dest: Path) -> None:
    """Copy the tracked files of ``repo`` (as they are in the work tree) to ``dest``."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = repo / name
        if not source.is_file():  # deleted in the work tree but not yet in the index
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def build_wheelhouse(checkout: Path, wheelhouse: Path) -> Path:
    """The project's wheel plus every locked runtime dependency as cp311 manylinux/pure wheels; returns the wheel.

    ``PORTABLE_LOADER_WHEEL`` names an already built wheel to test instead of
    building one (a release candidate, for example).
    """
    wheelhouse.mkdir(parents=True, exist_ok=True)
    given = os.environ.get("PORTABLE_LOADER_WHEEL")
    if given:
        shutil.copy2(given, wheelhouse)
    else:
        _pip("wheel", "--no-deps", "--wheel-dir", str(wheelhouse), str(checkout))
    wheels = sorted(wheelhouse.glob("portable_loader-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one portable_loader wheel in {wheelhouse}, found {[w.name for w in wheels]}")
    lock = checkout / LOCK
    if not lock.is_file():
        raise RuntimeError(f"no runtime lock {LOCK} in the checkout: the documented install needs it (make lock)")
    _pip(
        "download",
        "--dest",
        str(wheelhouse),
        "--only-binary=:all:",
        "--require-hashes",
        *_target_flags(),
        "--requirement",
        str(lock),
    )
    return wheels[0]


def _target_flags() -> list[str]:
    machine = platform.machine()
    return [
        "--python-version",
        TARGET_PYTHON,
        "--implementation",
        "cp",
        "--abi",
        TARGET_ABI,
        "--abi",
        "abi3",
        "--abi",
        "none",
        "--platform",
        f"manylinux_{TARGET_GLIBC}_{machine}",
        "--platform",
        f"manylinux2014_{machine}",
        "--platform",
        f"manylinux_2_17_{machine}",
        "--platform",
        f"manylinux_2_28_{machine}",
    ]


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check", *args], check=True)
