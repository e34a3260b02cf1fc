"""Names that end up in socket paths and folder names.

Plugin names, symbol names, rule ids and op ids all become parts of file
system paths (``plugin_<name>.ipc``, ``<rule>_<op>_<n>.ipc``, folders).  One
pattern guards all of them, checked before anything touches a path.
"""

from __future__ import annotations

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(name: object) -> bool:
    """True when ``name`` is a string safe to use in a socket path or folder name."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def check_name(name: object, what: str) -> str:
    """Return ``name`` or raise ValueError saying which name is wrong and what is allowed."""
    if not is_valid_name(name):
        raise ValueError(
            f"{what} {name!r} is not allowed: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name  # type: ignore[return-value]
