"""What the three runtimes share: building the user's symbol from its factory, the start error
and its one-line text, the instance's logger, closing a symbol without letting it kill the process,
and the error log that reports a failing symbol once (with its traceback) and counts the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from sdk.api import Factory
from sdk.log import context_logger
from sdk.protocol.control import Control

_log = logging.getLogger("sdk.runtime")


class StartError(Exception):
    """A start command failed; the text is the reply sent to the host."""


def error_text(err: BaseException) -> str:
    """``Type: message`` -- readable without a traceback, still says what kind of failure."""
    message = str(err)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def build_symbol(control: Control, factory: Factory) -> Any:
    try:
        return factory()
    except Exception as err:
        raise StartError(f"{control.describe()}: cannot create the symbol: {error_text(err)}") from err


def instance_logger(control: Control) -> logging.Logger:
    return context_logger(control.symbol, control.rule_id, control.op_id, control.instance_id)


_LATER_ERRORS = "later errors of this instance are counted, not logged"


class ErrorLog:
    """Logs the first error of an instance with its traceback and counts the rest."""

    def __init__(self, control: Control, what: str) -> None:
        self._context = control.log_context()
        self._what = what
        self.count = 0

    def record(self, err: BaseException, during: str | None = None) -> None:
        if self.count == 0:
            details = {"during": during or self._what, "error": error_text(err), "note": _LATER_ERRORS}
            _log.error("symbol raised", exc_info=err, extra={"sdk": {**self._context, **details}})
        self.count += 1


def close_symbol(control: Control, close: Callable[[], object]) -> None:
    try:
        close()
    except Exception as err:
        _log.error(
            "close raised",
            exc_info=err,
            extra={"sdk": {**control.log_context(), "error": error_text(err)}},
        )


class Runtime(Protocol):
    """What the control loop needs of a running symbol instance."""

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None: ...
