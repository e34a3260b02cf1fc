"""The handshake: the first request of an inverted channel (control, function), and its keepalive.

The plugin holds the REQ end of these channels, so it speaks first with
``handshake``.  Our sdk appends the capabilities it accepted, as JSON:
``handshake {"batch":1,"ackWindow":1024}`` still begins with ``h``, so any
host (eKuiper included) takes it for a handshake, and our host also reads
what it declares.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

HANDSHAKE = b"handshake"


def handshake_message(capabilities: dict[str, Any]) -> bytes:
    """``handshake``, followed by the capabilities as JSON when there are any (plugin side)."""
    if not capabilities:
        return HANDSHAKE
    return HANDSHAKE + b" " + json.dumps(capabilities, separators=(",", ":")).encode()


def is_handshake(message: bytes) -> bool:
    """eKuiper's SDKs treat any request beginning with ``h`` as a handshake (host side)."""
    return message[:1] == b"h"


def decode_capabilities(message: bytes, loads: Callable[[bytes], Any] = json.loads) -> dict[str, Any]:
    """What a handshake declares: ``handshake {"batch": 1}`` -> ``{"batch": 1}``; a plain one -> ``{}``.

    eKuiper's SDKs send the bare ``handshake`` and never declare anything, so
    they get the plain protocol.  Anything unreadable (not JSON, nested too
    deep to parse, not an object) declares nothing.  The host passes its own
    bounded parser as ``loads`` (it reads all outside JSON with it).
    """
    if not message.startswith(HANDSHAKE + b" "):
        return {}
    try:
        capabilities = loads(message[len(HANDSHAKE) + 1 :])
    except (ValueError, RecursionError):
        return {}
    return capabilities if isinstance(capabilities, dict) else {}


def declares_batch(capabilities: dict[str, Any]) -> bool:
    """True when a plugin process declared that it understands batch messages (version 1 or later)."""
    version = capabilities.get("batch")
    return isinstance(version, int) and not isinstance(version, bool) and version >= 1


#: What our sdk's sinks declare: they process and ack messages in order, so any window works;
#: this bounds what a host may leave in flight (the host's own setting usually bounds it lower).
SDK_ACK_WINDOW = 1024


def declared_ack_window(capabilities: dict[str, Any]) -> int:
    """How many messages a sink of this process may have unacknowledged: its ``ackWindow``, else 1.

    A plugin that declares nothing (eKuiper's SDKs keep one message in
    flight: they are sent the next only after the previous one's ack) or
    anything that is not a positive integer gets 1.
    """
    window = capabilities.get("ackWindow")
    if isinstance(window, int) and not isinstance(window, bool) and window >= 1:
        return window
    return 1
