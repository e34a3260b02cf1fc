"""Why a plugin process never handshook, said as what the evidence shows.

A launch that fails has few causes, and the process's exit code and last
output lines tell them apart:

- its output shows it dialing another plugin's control socket: the program
  declares a different name than its folder (a copied eKuiper SDK plugin);
- a Python traceback: the program raised before its handshake; the error
  leads, with its file and line (``SyntaxError: expected ':' (main.py, line 32)``);
- exit code 126: the program could not be executed (no execute permission,
  not a format the system runs, a directory);
- exit code 127: a program was not found (the interpreter on the ``#!``
  line, or a command a wrapper script runs);
- any other failure with output: its last line.

Only when nothing suggests otherwise (no output, or a clean exit or a
timeout with nothing telling) is the usual suspect named: a program that
declares another name than its folder.  Pure functions of their arguments.
"""

from __future__ import annotations

import re
from pathlib import Path

_DIALED_NAME = re.compile(r"plugin_([A-Za-z0-9_-]+)\.ipc")
_FILE_LINE = re.compile(r'^\s*File "([^"]+)", line (\d+)')
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning)(?::\s.*)?$")


def explain_no_handshake(
    outcome: str, returncode: int | None, tail: list[str], plugin: str, listening: Path, executable: Path
) -> str:
    """The error for a launch without handshake.

    ``outcome`` says what happened (``process exited before the handshake
    (exit code 1)`` or ``no handshake within 10s``); ``returncode`` is None
    when the process did not exit.
    """
    other = dialed_name(tail, plugin)
    if other is not None:
        return (
            f"{outcome}; its output shows it dialing plugin_{other}.ipc: the program declares the name "
            f"{other!r}, the folder is {plugin!r}; rename one to match"
        )
    error = python_error(tail)
    if error is not None:
        return f"{error}: the program failed before its handshake ({outcome}); fix the program"
    last = last_line(tail)
    said = f"; its output: {last!r}" if last else ""
    if returncode == 126:
        return (
            f"{outcome}: the program could not be executed (no execute permission, not a program the "
            f"system can run, or a directory){said}; check {executable} (chmod +x, its #! line)"
        )
    if returncode == 127:
        return (
            f"{outcome}: a program was not found: the interpreter on the #! line of {executable}, or a "
            f"command it runs{said}; install it or fix the #! line"
        )
    if returncode not in (None, 0) and last:
        return f"{outcome}{said}"
    return (
        f"{outcome}; the loader listens on {listening}; the plugin program may declare a different name "
        f"than its folder {plugin!r} (eKuiper SDK plugins also need ipc_dir /tmp)"
    )


def dialed_name(tail: list[str], plugin: str) -> str | None:
    """Another plugin's name, when the output shows the program dialing its control socket."""
    for line in reversed(tail):
        match = _DIALED_NAME.search(line)
        if match and match.group(1) != plugin:
            return match.group(1)
    return None


def python_error(tail: list[str]) -> str | None:
    """``SyntaxError: expected ':' (main.py, line 32)`` from a traceback in the output, else None.

    The exception is the last line naming one that follows a ``File "...",
    line N`` line; the location is the nearest such line before it.
    """
    for index in range(len(tail) - 1, -1, -1):
        line = tail[index].strip()
        if not _EXCEPTION.match(line):
            continue
        for earlier in range(index - 1, -1, -1):
            where = _FILE_LINE.match(tail[earlier])
            if where:
                return f"{line} ({Path(where.group(1)).name}, line {where.group(2)})"
    return None


def last_line(tail: list[str]) -> str:
    """The last non-blank output line, shortened to 300 characters."""
    for line in reversed(tail):
        if line.strip():
            text = line.strip()
            return text if len(text) <= 300 else text[:300] + "..."
    return ""
