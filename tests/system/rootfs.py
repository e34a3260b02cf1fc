"""The Debian bookworm root filesystem the system test boots, built once and cached.

debootstrap takes minutes, so the tree is built once per package list into a
cache outside the checkout and every run boots a fresh copy of it: a run never
changes the cache, and a changed package list (or builder) gets a new key and
so a new tree.  The tree is built under a temporary name and renamed into
place only when complete, so an interrupted build is never taken for a cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
CACHE_DIR = Path(os.environ.get("PORTABLE_LOADER_SYSTEM_CACHE", "/var/cache/portable-loader-system"))

# What booting with systemd as PID 1 and the documented install need: systemd
# (+ dbus for systemctl/systemd-analyze), python3 with venv (ensurepip brings
# pip offline), sudo because docs/operations.md's steps use it, jq for the
# journal recipes, procps for ps/pgrep-free checks by a person debugging.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "jq",
    "sudo",
    "procps",
)
HOSTNAME = "portable-loader-system"
# Bump when the way the tree is made changes, so old caches are not reused.
BUILDER_VERSION = "2"


def cache_key(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> str:
    """A short hash of everything that decides the tree's content."""
    text = "\n".join([BUILDER_VERSION, suite, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_rootfs(cache_dir: Path = CACHE_DIR) -> Path:
    """The cached tree for the current package list, built first when missing."""
    target = cache_dir / f"{SUITE}-{cache_key()}"
    if (target / "usr/lib/systemd/systemd").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f"{target.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(partial), MIRROR],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _prepare(partial)
    partial.rename(target)
    return target


def _prepare(root: Path) -> None:
    """Settings every boot needs: a root without password, a host name that resolves (sudo asks)."""
    (root / "etc/hostname").write_text(f"{HOSTNAME}\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n")
    subprocess.run(["chroot", str(root), "passwd", "-d", "root"], check=True, stdout=subprocess.DEVNULL)
    # Nothing in the container reaches a network; apt's lists are not needed either.
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def fresh_copy(source: Path, dest: Path) -> None:
    """A private copy of the cached tree for one run (reflinks where the filesystem has them)."""
    subprocess.run(["cp", "-a", "--reflink=auto", f"{source}/.", str(dest)], check=True)
