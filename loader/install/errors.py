"""What can go wrong installing, updating or deleting a plugin, as exceptions.

Each carries a message naming the thing and the fix, and ``code``, the
loader's stable word for it (REST shows it next to eKuiper's error number;
loader/api/plugins.py maps each class to its HTTP status).
"""

from __future__ import annotations


class PluginChangeError(Exception):
    """A plugin install, update or delete was refused or failed; nothing was left half done."""

    code = "invalid_plugin"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadPluginName(PluginChangeError):
    """The name cannot be a plugin's (or a shipped configuration file's) name."""

    code = "bad_name"


class PluginExists(PluginChangeError):
    """An install of a name that is installed already (or appeared meanwhile)."""

    code = "exists"


class PluginNotFound(PluginChangeError):
    """An update or delete of a plugin that is not installed."""

    code = "not_found"


class InvalidPlugin(PluginChangeError):
    """The zip or the folder in it cannot be used; ``code`` says how (an archive code, or ``invalid_plugin``)."""


class SymbolTaken(PluginChangeError):
    """The plugin declares a symbol another plugin provides."""

    code = "symbol_conflict"


class PluginDidNotStart(PluginChangeError):
    """The new version failed to start or its probation; it was rolled back."""

    code = "plugin_failed"


class InstallsBusy(PluginChangeError):
    """Every download worker is busy (``limits.download_workers``); retry after ``retry_after_s``."""

    code = "busy"
    retry_after_s = 5
