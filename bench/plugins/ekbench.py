"""Benchmark source written only against eKuiper's official Python SDK (``ekuiper``).

Source ``ekflood`` emits ``{"n", "name", "v"}`` records as fast as the SDK
lets it, the same 75-byte messages as the sdk benchmark source.  The plugin
name is the name of the folder it runs in: eKuiper's SDK hard-codes
``/tmp/plugin_<name>.ipc``, so the benchmark gives every run a unique folder
name and never collides with another user of ``/tmp``.
"""

import os

from ekuiper import Context, PluginConfig, Source, plugin


class Flood(Source):
    def __init__(self):
        self.running = True

    def configure(self, datasource, conf):
        pass

    def open(self, ctx: Context):
        n = 0
        while self.running:
            n += 1
            ctx.emit({"n": n, "name": "bench-record", "v": 12.5}, None)

    def close(self, ctx: Context):
        self.running = False


if __name__ == "__main__":
    plugin.start(PluginConfig(os.path.basename(os.getcwd()), {"ekflood": lambda: Flood()}, {}, {}))
