"""The running symbol instances of this process, by key.

The control thread adds and removes instances while a shutdown (signal
handler on the main thread) may take them all; a lock keeps those apart, and
once closed the registry refuses newcomers so nothing starts after shutdown
has collected what to close.
"""

from __future__ import annotations

import threading
from typing import Any


class Registry:
    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, key: str) -> Any | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, runtime: Any) -> bool:
        """Register; False when the process is shutting down (caller must stop it)."""
        with self._lock:
            if self._closed:
                return False
            self._items[key] = runtime
            return True

    def pop(self, key: str) -> Any | None:
        with self._lock:
            return self._items.pop(key, None)

    def remove(self, key: str, runtime: Any) -> bool:
        """Unregister ``runtime`` if it is still the one under ``key``; False if something took it."""
        with self._lock:
            if self._items.get(key) is not runtime:
                return False
            del self._items[key]
            return True

    def close(self) -> list[Any]:
        """Refuse further instances and hand over every running one."""
        with self._lock:
            self._closed = True
            items, self._items = list(self._items.values()), {}
            return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
