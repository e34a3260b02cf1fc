"""The wire protocol between the loader (host) and a plugin process, written once.

Both sides import these modules: the loader for the host end, ``sdk`` for the
plugin end, so a name, a key or a message shape cannot drift apart.  Standard
library only (tests/sdk/test_purity.py checks it): the package runs in plugin
processes and must not pull in the loader or its dependencies.

- ``names``: socket file names and the key of a running symbol instance;
- ``argjson``: the protocol version offered in the process argument;
- ``handshake``: the handshake and the capabilities it may declare;
- ``control``: the start/stop command and the Control it carries;
- ``messages``: the data channels' payloads (source, sink, ack, function);
- ``jsonenc``: the reused C JSON encoders the messages are written with;
- ``ipc_wire``: nng's wire format over IPC, and the dialing PUSH end records go through;
- ``logline``: the keys of the sdk's stderr log line the host parses.

docs/protocol.md describes every shape.
"""
