"""The service around the parts: configuration, logging, change sources, the event loop, the CLI.

Nothing here decides about plugins or rules; it wires the plugin reconciler,
the rules reconciler and the REST API to one event loop (service), feeds them
changes (changes, watcher), and talks to the operator (cli, client, reload,
log, journal, systemd).
"""
