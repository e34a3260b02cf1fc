"""The process argument (argJSON): what the host offers beyond eKuiper's PortableConfig.

A host starts a plugin as ``<program> '<argJSON>'``; eKuiper sends
``{"sendTimeout": 1000}``, our loader adds an object under ``EXTENSION_KEY``
whose ``protocol`` is ``PROTOCOL_VERSION``.  The loader writes it
(loader/plugins/process.py), the sdk reads it (sdk/args.py).
"""

from __future__ import annotations

#: Version of the protocol extensions: the host offers it, the sdk understands up to it.
PROTOCOL_VERSION = 1
#: Key of the extension object inside argJSON (eKuiper ignores unknown keys).
EXTENSION_KEY = "portableLoader"
