"""Test plugin of the SQL corpus (tests/rules/sql/): replays a case's input rows and records what reaches the sink.

- source ``rows``: its DATASOURCE names a JSON file ``{"rows": [...], "metas": [...] | null}``;
  it emits every row, in order, with the matching metadata (or none), then idles until stopped.
- sink ``record``: appends every message it receives, as received, to the
  file named by its ``path`` property, one line per message, then acks it.
"""

import json
import threading

from sdk import Context, PluginConfig, Sink, Source, start


class Rows(Source):
    def configure(self, datasource: str, conf: dict) -> None:
        with open(datasource) as f:
            data = json.load(f)
        self.rows = data["rows"]
        self.metas = data.get("metas") or [None] * len(self.rows)
        self.stopped = threading.Event()

    def open(self, ctx: Context) -> None:
        for row, meta in zip(self.rows, self.metas, strict=True):
            if self.stopped.is_set():
                return
            ctx.emit(row, meta)
        self.stopped.wait()

    def close(self, ctx: Context) -> None:
        self.stopped.set()


class Record(Sink):
    def configure(self, conf: dict) -> None:
        self.path = conf["path"]

    def open(self, ctx: Context) -> None:
        self.file = open(self.path, "a", buffering=1)

    def collect(self, ctx: Context, data: bytes) -> None:
        self.file.write(data.decode() + "\n")
        self.file.flush()
        ctx.ack_ok()

    def close(self, ctx: Context) -> None:
        self.file.close()


if __name__ == "__main__":
    start(PluginConfig("casefix", sources={"rows": Rows}, sinks={"record": Record}, functions={}))
