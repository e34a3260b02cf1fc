"""Socket file names of the channels, and the key of a running symbol instance.

eKuiper's SDKs hard-code these names; the host listens (or dials) on them in
its IPC directory and the plugin dials (or listens) on the same names there.
"""

from __future__ import annotations


def control_name(plugin: str) -> str:
    """The control channel of a plugin process: ``plugin_<name>.ipc``."""
    return f"plugin_{plugin}.ipc"


def function_name(symbol: str) -> str:
    """The channel of a function symbol, shared by every rule calling it: ``func_<symbol>.ipc``."""
    return f"func_{symbol}.ipc"


def channel_stem(rule_id: str, op_id: str, instance: object) -> str:
    """What the data and ack socket names of a source or sink instance begin with."""
    return f"{rule_id}_{op_id}_{instance}"


def data_name(rule_id: str, op_id: str, instance: object) -> str:
    """The data channel of a source or sink instance: ``<rule>_<op>_<instance>.ipc``."""
    return f"{channel_stem(rule_id, op_id, instance)}.ipc"


def ack_name(rule_id: str, op_id: str, instance: object) -> str:
    """The ack channel of a sink instance: ``<rule>_<op>_<instance>_ack.ipc``."""
    return f"{channel_stem(rule_id, op_id, instance)}_ack.ipc"


def instance_key(rule_id: str, op_id: str, instance: object, symbol: str) -> str:
    """The key of a running source or sink instance: ``<rule>_<op>_<instance>_<symbol>``."""
    return f"{channel_stem(rule_id, op_id, instance)}_{symbol}"


def function_key(symbol: str) -> str:
    """The key of a running function symbol: one per symbol, whoever calls it."""
    return f"func_{symbol}"
