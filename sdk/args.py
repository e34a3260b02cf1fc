"""The process argument: eKuiper's PortableConfig plus our optional extension.

A host starts a plugin as ``<program> '<argJSON>'``.  eKuiper sends
``{"sendTimeout": 1000}``; our loader adds a ``portableLoader`` object.  This
module is the *only* place that reads it, so every extension key and its
fallback is visible here (and documented in docs/sdk.md, "Extensions").

Falling back is the rule: a missing, malformed or older extension yields the
plain eKuiper behaviour, so the same plugin file runs under eKuiper unchanged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sdk.protocol.argjson import EXTENSION_KEY
from sdk.protocol.handshake import SDK_ACK_WINDOW

DEFAULT_IPC_DIR = "/tmp"
DEFAULT_SEND_TIMEOUT_MS = 1000
DEFAULT_KEEPALIVE_MS = 5000

_log = logging.getLogger("sdk.args")


@dataclass(frozen=True)
class BatchOffer:
    """The host's offer of the batching extension (``portableLoader.batch``)."""

    #: Most records in one source batch message.
    max_records: int
    #: Longest the first record of a source batch waits before the batch is sent.
    linger_ms: float


@dataclass(frozen=True)
class RuntimeArgs:
    """Everything the runtime needs from the host, already defaulted."""

    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS
    ipc_dir: str = DEFAULT_IPC_DIR
    keepalive_ms: int = DEFAULT_KEEPALIVE_MS
    #: Plugin name as the host knows it; None means "use PluginConfig's name".
    plugin_name: str | None = None
    #: Extension protocol the host offered (0: none, plain eKuiper host).
    protocol: int = 0
    #: Batching, when the host offered it (None: one record per message, as eKuiper).
    batch: BatchOffer | None = None

    @property
    def capabilities(self) -> dict:
        """What this plugin declares in its handshakes: the extensions it accepted.

        Under a host that speaks the extension, the sink ack window too: a sink
        of this sdk processes and acks its messages in order, so it lets the
        host have up to ``SDK_ACK_WINDOW`` unacknowledged (docs/protocol.md).
        """
        declared: dict[str, int] = {}
        if self.batch is not None:
            declared["batch"] = 1
        if self.protocol >= 1:
            declared["ackWindow"] = SDK_ACK_WINDOW
        return declared

    def name_for(self, declared: str) -> str:
        """The name used in ``plugin_<name>.ipc``: the host's, when it told us."""
        return self.plugin_name or declared


def parse_argv(argv: list[str]) -> RuntimeArgs:
    """Read ``argv[1]`` (if any); anything unusable is logged and defaulted."""
    if len(argv) < 2:
        return RuntimeArgs()
    try:
        raw = json.loads(argv[1])
    except ValueError as err:
        _log.warning("bad process argument", extra={"sdk": {"error": f"not JSON ({err}), using defaults"}})
        return RuntimeArgs()
    if not isinstance(raw, dict):
        _log.warning("bad process argument", extra={"sdk": {"error": "not a JSON object, using defaults"}})
        return RuntimeArgs()
    return parse_object(raw)


def parse_object(raw: dict) -> RuntimeArgs:
    """Build RuntimeArgs from the decoded argJSON object."""
    send_timeout = _positive_int(raw.get("sendTimeout"), DEFAULT_SEND_TIMEOUT_MS, "sendTimeout")
    ext = raw.get(EXTENSION_KEY)
    if not isinstance(ext, dict):
        return RuntimeArgs(send_timeout_ms=send_timeout)
    protocol = ext.get("protocol")
    if not isinstance(protocol, int) or isinstance(protocol, bool) or protocol < 1:
        _log.warning("extension ignored", extra={"sdk": {"error": f"protocol {protocol!r} is not a version >= 1"}})
        return RuntimeArgs(send_timeout_ms=send_timeout)
    return RuntimeArgs(
        send_timeout_ms=send_timeout,
        ipc_dir=_path_string(ext.get("ipcDir"), DEFAULT_IPC_DIR, "ipcDir"),
        keepalive_ms=_positive_int(ext.get("keepaliveMs"), DEFAULT_KEEPALIVE_MS, "keepaliveMs"),
        plugin_name=_name(ext.get("pluginName")),
        protocol=protocol,
        batch=_batch(ext.get("batch")),
    )


def _batch(value: object) -> BatchOffer | None:
    """``{"maxRecords": int >= 1, "lingerMs": number >= 0}``; anything else declines the offer."""
    if value is None:
        return None
    if isinstance(value, dict):
        records, linger = value.get("maxRecords"), value.get("lingerMs")
        if (
            isinstance(records, int)
            and not isinstance(records, bool)
            and records >= 1
            and isinstance(linger, (int, float))
            and not isinstance(linger, bool)
            and 0 <= linger <= 60000
        ):
            return BatchOffer(max_records=records, linger_ms=float(linger))
    details = {"key": "batch", "value": repr(value), "error": "ignored, no batching"}
    _log.warning("bad process argument", extra={"sdk": details})
    return None


def _positive_int(value: object, default: int, key: str) -> int:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    _log.warning("bad process argument", extra={"sdk": {"key": key, "value": repr(value), "error": "ignored"}})
    return default


def _path_string(value: object, default: str, key: str) -> str:
    if value is None:
        return default
    if isinstance(value, str) and value and "\0" not in value:
        return value.rstrip("/") or "/"
    _log.warning("bad process argument", extra={"sdk": {"key": key, "value": repr(value), "error": "ignored"}})
    return default


def _name(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value and "/" not in value and "\0" not in value:
        return value
    _log.warning("bad process argument", extra={"sdk": {"key": "pluginName", "value": repr(value), "error": "ignored"}})
    return None
