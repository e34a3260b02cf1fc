"""Write portable plugins for the loader (and for eKuiper) in Python.

The public names match eKuiper's Python SDK, so a plugin ports by changing
its import::

    from sdk import Source, Sink, Function, Context, PluginConfig, start
    start(PluginConfig("car", sources={"counter": Counter}))

``from sdk import plugin; plugin.start(...)`` works too, as in eKuiper.
This package imports only the standard library and pynng: it runs inside
plugin processes, which must stay small.
"""

from sdk import plugin
from sdk.api import Context, Function, PluginConfig, Sink, Source
from sdk.plugin import start

__all__ = ["Context", "Function", "PluginConfig", "Sink", "Source", "plugin", "start"]
