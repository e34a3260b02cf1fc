"""Test plugin: function ``spread`` is an aggregate (IsAggregate true): given the column of a group's
values as an array, it answers the largest minus the smallest."""

from typing import Any

from sdk import Context, Function, PluginConfig, start


class Spread(Function):
    def validate(self, args: list[Any]) -> str:
        return "" if len(args) == 1 else f"spread takes 1 argument, got {len(args)}"

    def exec(self, args: list[Any], ctx: Context) -> Any:
        values = args[0]
        if not isinstance(values, list):
            raise ValueError(f"spread expects an array per group, got {values!r}")
        return max(values) - min(values)

    def is_aggregate(self) -> bool:
        return True


if __name__ == "__main__":
    start(PluginConfig("aggfn", sources={}, sinks={}, functions={"spread": Spread}))
