"""Does a Python plugin's code compile?  Asked before anything running is stopped.

A syntax error saved into a running plugin's folder must be refused like a
broken manifest, not found out by starting the new version (which would
stop the good one).  Compiling in memory (``compile``, what ``py_compile``
does without writing a ``.pyc``) finds syntax errors without running any
of the plugin's code and without writing into its folder.  The executable
and the plugin's own modules are compiled; a virtual environment or
installed packages shipped inside the folder are not the plugin's code.
"""

from __future__ import annotations

from pathlib import Path

from loader.config import FolderLimits
from loader.plugins.digest import content_files
from loader.plugins.folders import read_regular


def python_sources(folder: Path, executable: Path, limits: FolderLimits | None = None) -> list[Path]:
    """The executable first, then the folder's other ``.py`` files outside bundled environments.

    The folder is walked like the digest walks it (loader/plugins/folders.py): no
    special files, no links out, within ``limits``; FolderError otherwise.
    """
    sources = [executable]
    for path in content_files(folder, limits):
        if path.suffix != ".py" or path.resolve() == executable:
            continue
        parts = path.relative_to(folder).parts[:-1]
        if "site-packages" in parts or _inside_venv(folder, parts):
            continue
        sources.append(path)
    return sources


def _inside_venv(folder: Path, parts: tuple[str, ...]) -> bool:
    for depth in range(1, len(parts) + 1):
        if (folder.joinpath(*parts[:depth]) / "pyvenv.cfg").exists():
            return True
    return False


def syntax_error(path: Path, limits: FolderLimits | None = None) -> str | None:
    """``SyntaxError: <msg> (<file>, line <n>)`` for a file that does not compile, else None.

    Read without blocking on a FIFO and bounded by ``limits`` (FolderError for those).
    """
    try:
        source = read_regular(path, (limits or FolderLimits()).max_bytes)
    except OSError as exc:
        return f"cannot read {path.name}: {exc.strerror}"
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError and TabError are SyntaxErrors too
        return f"{type(exc).__name__}: {exc.msg} ({path.name}, line {exc.lineno})"
    except ValueError as exc:  # e.g. a NUL byte in the source
        return f"SyntaxError: {exc} ({path.name})"
    return None


def first_syntax_error(folder: Path, executable: Path, limits: FolderLimits | None = None) -> tuple[Path, str] | None:
    """The first source of the plugin that does not compile, with the error; FolderError if unsafe to read."""
    for path in python_sources(folder, executable, limits):
        error = syntax_error(path, limits)
        if error is not None:
            return path, error
    return None
