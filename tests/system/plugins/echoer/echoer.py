"""A small healthy plugin the system test installs with the CLI from a local folder.

It ships functions/shout.json, so the install also writes to the configuration folder.
"""

from __future__ import annotations

from typing import Any

from sdk import Context, Function, PluginConfig, start


class Shout(Function):
    def validate(self, args: list[Any]) -> str:
        return "" if len(args) == 1 else f"shout takes exactly 1 argument, got {len(args)}"

    def exec(self, args: list[Any], ctx: Context) -> Any:
        return str(args[0]).upper()

    def is_aggregate(self) -> bool:
        return False


if __name__ == "__main__":
    start(PluginConfig("echoer", functions={"shout": Shout}))
