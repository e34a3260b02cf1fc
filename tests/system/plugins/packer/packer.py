"""A plugin with a requirements.txt: the service builds its venv, offline, inside the unit's sandbox.

orjson is compiled code, so the plugin starting at all shows that a venv's
native extension loads under MemoryDenyWriteExecute= and SystemCallFilter=.
"""

from __future__ import annotations

from typing import Any

import orjson

from sdk import Context, Function, PluginConfig, start


class Packed(Function):
    def validate(self, args: list[Any]) -> str:
        return "" if len(args) == 1 else f"packed takes exactly 1 argument, got {len(args)}"

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return "packed:" + orjson.dumps(args[0]).decode()

    def is_aggregate(self) -> bool:
        return False


if __name__ == "__main__":
    start(PluginConfig("packer", functions={"packed": Packed}))
