"""The sdk's stderr log line, as the host reads it.

Every line the sdk logs is one JSON object: ``{"src": "sdk", "level":
"info", "event": "<message>", ...}`` plus context keys.  The marker tells the
host (loader/plugins/output.py) these lines apart from whatever else a plugin writes.
"""

from __future__ import annotations

#: Key and value that mark a stderr line as the sdk's.
MARKER_KEY = "src"
MARKER = "sdk"
LEVEL_KEY = "level"
EVENT_KEY = "event"
#: The formatted traceback, when the record had one.
EXC_KEY = "exc"
