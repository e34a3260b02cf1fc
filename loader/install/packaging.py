"""``portable-loader package``: a plugin folder as a zip that runs under any host.

eKuiper starts a Python plugin with its own interpreter, in the plugin's
folder, and nothing but that interpreter's site-packages is on its path: a
plugin written on ``sdk`` failed its handshake there with
``ModuleNotFoundError: No module named 'sdk'``.  So the zip carries the
``sdk`` package itself (it is standard library plus pynng, which eKuiper's
own Python SDK needs too), next to the executable, where Python looks first
for imports (the script's directory is the first entry of ``sys.path``).

It is vendored only when the plugin's Python code imports ``sdk`` and the
folder does not already ship its own copy there.  Under the loader the
vendored copy is what the plugin imports as well, so a zip behaves the same
wherever it is installed.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import sdk
from loader.plugins.digest import content_files
from loader.plugins.manifest import PluginSpec

#: An import of the sdk package at the start of a line: ``import sdk``, ``from sdk import ...``, ``from sdk.x ...``.
_IMPORTS_SDK = re.compile(rb"^\s*(?:from\s+sdk(?:\.|\s)|import\s+sdk\b)", re.MULTILINE)


def sdk_files() -> list[Path]:
    """The modules of the installed ``sdk`` package and of its subpackages (folders with an ``__init__.py``).

    Only those: a checkout's ``sdk/`` also holds the sdk's own pyproject.toml
    and, after a build, build folders that are no part of the package.
    """
    return sorted(_package_modules(Path(sdk.__file__).resolve().parent))


def _package_modules(package: Path) -> list[Path]:
    modules = list(package.glob("*.py"))
    for sub in package.iterdir():
        if sub.is_dir() and (sub / "__init__.py").is_file():
            modules += _package_modules(sub)
    return modules


def imports_sdk(files: list[Path]) -> bool:
    """Whether any of the plugin's Python files imports ``sdk``."""
    for path in files:
        if path.suffix == ".py" and _IMPORTS_SDK.search(path.read_bytes()):
            return True
    return False


def vendored_sdk(spec: PluginSpec, files: list[Path]) -> list[tuple[Path, str]]:
    """(file, name in the zip) of the sdk copy a Python plugin needs; empty when it needs none."""
    if spec.language != "python" or not imports_sdk(files):
        return []
    folder = spec.folder.resolve()
    target = spec.executable.resolve().parent.relative_to(folder) / "sdk"
    if (folder / target).exists():
        return []  # the plugin ships its own sdk there
    root = Path(sdk.__file__).resolve().parent
    return [(path, (target / path.relative_to(root)).as_posix()) for path in sdk_files()]


def write_zip(spec: PluginSpec, output: Path) -> int:
    """Zip the folder's content (what the digest covers) at the zip's root, plus the sdk it needs.

    Returns how many sdk files were vendored.
    """
    folder = spec.folder.resolve()
    files = content_files(folder)
    extra = vendored_sdk(spec, files)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(folder).as_posix())
        for path, name in extra:
            archive.write(path, name)
    return len(extra)
