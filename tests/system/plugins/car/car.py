"""A broken plugin: it starts, then a fault ends it with a Python traceback.

The system test drops it into the service to see a plugin's crash in the
journal: the error priority, the traceback, the restarts and the recipes
of docs/operations.md that ask about plugin "car".
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from typing import Any

from sdk import Context, Function, PluginConfig, start


class Honk(Function):
    def validate(self, args: list[Any]) -> str:
        return ""

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return "honk"

    def is_aggregate(self) -> bool:
        return False


def crash_soon() -> None:
    time.sleep(1.0)
    try:
        raise RuntimeError("car: the wheel fell off")
    except RuntimeError:
        traceback.print_exc()
    sys.stderr.flush()
    os._exit(3)


if __name__ == "__main__":
    threading.Thread(target=crash_soon, daemon=True).start()
    start(PluginConfig("car", functions={"honk": Honk}))
