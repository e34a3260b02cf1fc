"""A healthy plugin that takes seconds to start, like one loading a model or opening a device.

The system test restarts the service with it in place: systemd must hear
READY=1 before this plugin has finished starting.
"""

from __future__ import annotations

import time
from typing import Any

from sdk import Context, Function, PluginConfig, start

STARTUP_S = 6.0  # below the loader's handshake timeout (10 s), far above a READY that does not wait


class Yawn(Function):
    def validate(self, args: list[Any]) -> str:
        return ""

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return "yawn"

    def is_aggregate(self) -> bool:
        return False


if __name__ == "__main__":
    time.sleep(STARTUP_S)
    start(PluginConfig("slowpoke", functions={"yawn": Yawn}))
