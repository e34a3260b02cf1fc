"""What a sink is sent, as eKuiper 2.4 sends it: arrays of rows, sendSingle objects, and the common properties.

Pure tests for the template subset, the properties' checks and the message
shapes; host-level tests drive ``PortableSink`` against a raw pynng peer; the
end-to-end tests run the real loader on real sdk plugin processes (the
collector sink writes each message it gets as one line, untouched).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loader.dataplane.data_template import DataTemplate, TemplateError, TemplateRunError
from loader.dataplane.sink_options import messages, sink_options
from loader.rules.definitions import DefinitionError, rule_from_json
from tests.support.batching import SinkPeer, install_batchfix, noted, portable_sink, probed_messages
from tests.support.rules import (
    install_collector,
    install_seqsrc,
    loader_for,
    seq_config,
    sink_messages,
    stream,
    write_json,
)
from tests.support.waiting import wait_until

ROWS = [{"ab": "hello1", "n": 1, "t": 36.25}, {"ab": "hello2", "n": 2, "t": 3.0}]


# --- the data template subset ----------------------------------------------------


@pytest.mark.parametrize(
    "template, data, text",
    [
        ('{"content":{{json .}}}', ROWS[:1], '{"content":[{"ab":"hello1","n":1,"t":36.25}]}'),
        ('{"content":{{.ab}}}', ROWS[0], '{"content":hello1}'),
        ('{"content":"{{.ab}}","t":{{.t}}}', ROWS[1], '{"content":"hello2","t":3}'),
        ("{{json (index . 0)}}", ROWS, '{"ab":"hello1","n":1,"t":36.25}'),
        ('{"ab":"{{index . 1 "ab"}}"}', ROWS, '{"ab":"hello2"}'),
        (
            "{{toJson .nested.v}} {{.nested.v}} {{.missing}} {{.none}}",
            {"nested": {"v": [1, 2]}, "none": None},
            "[1,2] [1 2] <no value> <nil>",
        ),
        ("  {{- /* a comment */ -}}  {{.n}} ", {"n": 5}, "5 "),
        (
            "{{.big}} {{.small}} {{.flag}} {{`raw`}}",
            {"big": 1e21, "small": 0.00001, "flag": True},
            "1e+21 1e-05 true raw",
        ),
    ],
)
def test_the_template_subset_renders_as_go_does(template, data, text):
    assert DataTemplate(template).render(data) == text


@pytest.mark.parametrize(
    "template, named",
    [
        ("{{range .}}{{.ab}}{{end}}", "{{range}} (control structures)"),
        ("{{if .a}}x{{end}}", "{{if}} (control structures)"),
        ("{{.a | json}}", "the pipe |"),
        ("{{$x := .a}}", "the variable $x"),
        ('{{printf "%d" .n}}', "the function printf"),
        ("{{.a", "unclosed action"),
        ("{{json}}", "json takes exactly 1 argument"),
    ],
)
def test_templates_outside_the_subset_are_refused_naming_the_construct(template, named):
    with pytest.raises(TemplateError) as refused:
        DataTemplate(template)
    assert named in str(refused.value)


def test_a_field_of_the_array_says_how_to_reach_a_row():
    with pytest.raises(TemplateRunError) as failed:
        DataTemplate("{{.ab}}").render(ROWS)
    assert 'use {{index . 0 "ab"}} or set sendSingle: true' in str(failed.value)


# --- the properties, checked at admission ------------------------------------------


def admit(props: dict[str, Any]) -> None:
    rule_from_json(
        {"id": "r1", "sql": "SELECT n FROM s", "actions": [{"log": {}}, {"collect": props}]}, "rules/r1.json"
    )


@pytest.mark.parametrize(
    "props, error",
    [
        ({"format": "protobuf"}, "format 'protobuf' is not supported by the loader"),
        ({"format": "xml"}, "format 'xml' is not a sink format"),
        ({"sendSingle": "yes"}, 'sendSingle must be true or false, got "yes"'),
        ({"omitIfEmpty": 1}, "omitIfEmpty must be true or false, got 1"),
        ({"fields": "n"}, "fields must be a list of field names"),
        ({"fields": ["n"], "excludeFields": ["m"]}, "fields and excludeFields cannot both be set"),
        ({"bufferLength": 0}, "bufferLength must be a positive integer, got 0"),
        ({"compression": "gzip"}, "compression is not supported by the loader"),
        ({"batchSize": 10}, "batchSize is not supported by the loader"),
        (
            {"dataTemplate": "{{range .}}{{end}}"},
            "dataTemplate: {{range .}}: {{range}} (control structures) is not "
            "supported by the loader; supported: {{.}}",
        ),
    ],
)
def test_admission_refuses_a_property_naming_the_action_and_the_fix(props, error):
    with pytest.raises(DefinitionError) as refused:
        admit(props)
    assert str(refused.value).startswith("rules/r1.json at /actions/1/collect: ")
    assert error in str(refused.value)


def test_admission_accepts_what_the_loader_honours():
    admit(
        {
            "sendSingle": True,
            "omitIfEmpty": True,
            "fields": ["n"],
            "format": "json",
            "bufferLength": 8,
            "dataTemplate": '{"v":{{json .}}}',
            "requireAck": True,
            "anything": "else",
        }
    )


# --- messages ----------------------------------------------------------------


def shapes(emissions: list, **props: Any) -> tuple[list, list[str]]:
    out, errors = messages(emissions, sink_options(props))
    return [(m.value, m.rows) for m in out], errors


def test_an_emission_is_one_array_message_unless_send_single():
    emissions = [ROWS, [ROWS[0]]]
    assert shapes(emissions) == ([(ROWS, 2), ([ROWS[0]], 1)], [])
    assert shapes(emissions, sendSingle=True) == ([(ROWS[0], 1), (ROWS[1], 1), (ROWS[0], 1)], [])


def test_omit_if_empty_drops_empty_results_and_empty_single_rows_as_ekuiper():
    emissions: list = [[], [{}], [{}, {"n": 1}]]
    assert shapes(emissions) == ([([], 0), ([{}], 1), ([{}, {"n": 1}], 2)], [])
    # eKuiper omits an empty result; a result of empty rows is not empty
    assert shapes(emissions, omitIfEmpty=True) == ([([{}], 1), ([{}, {"n": 1}], 2)], [])
    assert shapes(emissions, omitIfEmpty=True, sendSingle=True) == ([({"n": 1}, 1)], [])


def test_fields_exclude_fields_and_data_field_select_as_ekuiper():
    assert shapes([ROWS], fields=["n", "zz"]) == ([([{"n": 1, "zz": None}, {"n": 2, "zz": None}], 2)], [])
    assert shapes([ROWS], excludeFields=["t"], sendSingle=True)[0] == [
        ({"ab": "hello1", "n": 1}, 1),
        ({"ab": "hello2", "n": 2}, 1),
    ]
    assert shapes([ROWS], dataField="ab") == ([("hello1", 2)], [])  # of the first row, as eKuiper
    # the template first, then the selection
    assert shapes([ROWS], dataTemplate='{"first":{{json (index . 0)}},"k":1}', dataField="first", fields=["ab"]) == (
        [({"ab": "hello1"}, 2)],
        [],
    )


def test_a_template_that_does_not_fit_a_result_drops_it_with_an_error():
    out, errors = shapes([ROWS, []], dataTemplate='{"ab":"{{index . 0 "ab"}}"}')
    assert out == [({"ab": "hello1"}, 2)]
    assert errors == ["dataTemplate: index 0 out of range: the array has 0 elements"]
    out, errors = shapes([ROWS], dataTemplate="{{.ab}}", sendSingle=True)
    assert out == [] and errors[0].startswith("dataTemplate made 'hello1', which is not JSON")


# --- PortableSink on the wire ---------------------------------------------------


def test_portable_sink_sends_what_the_options_make_and_counts_rows(ipc_dir):
    sink = portable_sink(ipc_dir, max_records=0)
    sink.options = sink_options({"omitIfEmpty": True, "dataTemplate": '{"first":{{json (index . 0)}}}'})
    peer = SinkPeer(sink.channel)
    sink.channel.connect()
    try:
        sink.deliver_many([ROWS, [], [ROWS[1]]])
        assert peer.messages == [
            b'{"first":{"ab":"hello1","n":1,"t":36.25}}',
            b'{"first":{"ab":"hello2","n":2,"t":3.0}}',
        ]
        metrics = sink.metrics
        assert (metrics.records_in, metrics.records_out, metrics.exceptions) == (3, 3, 0)
        sink.options = sink_options({"dataTemplate": "{{.ab}}"})  # not JSON, and .ab of an array
        sink.deliver_many([ROWS])
        assert (metrics.records_in, metrics.records_out, metrics.exceptions) == (5, 3, 1)
        assert "sendSingle" in metrics.last_exception
    finally:
        sink.channel.close()
        peer.close()


def test_a_batch_holds_send_single_objects_and_acks_count_messages(ipc_dir):
    sink = portable_sink(ipc_dir, max_records=3)
    sink.options = sink_options({"sendSingle": True, "fields": ["n"]})
    peer = SinkPeer(sink.channel)
    sink.channel.connect()
    try:
        sink.deliver_many([ROWS, [{"n": 3}], [{"n": 4}, {"n": 5}]])
        assert peer.messages == [b'#batch 3\n{"n":1}\n{"n":2}\n{"n":3}', b'#batch 2\n{"n":4}\n{"n":5}']
        assert sink.metrics.records_out == 5
    finally:
        sink.channel.close()
        peer.close()


# --- end to end: the real loader --------------------------------------------------


def collect(out: Path, **props: Any) -> dict:
    return {"collect": {"path": str(out), "requireAck": True, **props}}


def rule_file(data: Path, rule_id: str, sql: str, actions: list[dict]) -> None:
    write_json(data / "rules" / f"{rule_id}.json", {"id": rule_id, "sql": sql, "actions": actions})


def wait_messages(path: Path, count: int) -> list:
    return wait_until(
        lambda: len(got := sink_messages(path)) >= count and got,
        timeout=20,
        what=f"{count} messages in {path.name}",
        detail=lambda: f"got {sink_messages(path)}",
    )


def test_sinks_get_arrays_by_default_objects_with_send_single_and_the_selected_fields(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 5})
    stream(env["data"])
    out = {name: env["out"] / f"{name}.jsonl" for name in ("plain", "single", "fields", "exclude")}
    config_out = env["out"] / "config.json"
    rule_file(
        env["data"],
        "r1",
        "SELECT n, revert(name) AS r FROM demo",
        [
            collect(out["plain"], config_out=str(config_out), bufferLength=16, omitIfEmpty=True),
            collect(out["single"], sendSingle=True),
            collect(out["fields"], fields=["r"]),
            collect(out["exclude"], excludeFields=["n"], sendSingle=True),
            {"log": {"sendSingle": True, "fields": ["n"]}},
        ],
    )
    loader = loader_for(processes, env)
    rows = [{"n": n, "r": f"x{n}"[::-1]} for n in range(1, 6)]
    assert wait_messages(out["plain"], 5) == [[row] for row in rows]
    assert wait_messages(out["single"], 5) == rows
    assert wait_messages(out["fields"], 5) == [[{"r": row["r"]}] for row in rows]
    assert wait_messages(out["exclude"], 5) == [{"r": row["r"]} for row in rows]
    logged = loader.wait_for("sink.log", rule="r1", count=5)
    assert [e["message"] for e in loader.find("sink.log", rule="r1")] == [{"n": n} for n in range(1, 6)]
    assert logged["message"] == {"n": 5}
    # as in eKuiper, every action property reaches the sink's configure, the common ones too
    assert json.loads(config_out.read_text()) == {
        "path": str(out["plain"]),
        "requireAck": True,
        "config_out": str(config_out),
        "bufferLength": 16,
        "omitIfEmpty": True,
    }


def test_data_template_and_omit_if_empty_end_to_end(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    seq_config(env["etc"], default={"count": 6, "empty_every": 3})  # records 3 and 6 are {}
    stream(env["data"])
    out = {name: env["out"] / f"{name}.jsonl" for name in ("array", "single", "omit", "keep", "bad")}
    rule_file(
        env["data"],
        "r1",
        "SELECT * FROM demo",
        [
            collect(
                out["array"],
                dataTemplate='{"first":{{json (index . 0)}},"name":"{{index . 0 "name"}}"}',
                omitIfEmpty=True,
            ),
            collect(
                out["single"],
                sendSingle=True,
                omitIfEmpty=True,
                dataTemplate='{"id":{{.n}},"v":{{.nested.v}},"all":{{json .}}}',
            ),
            collect(out["omit"], sendSingle=True, omitIfEmpty=True),
            collect(out["keep"]),
            collect(out["bad"], dataTemplate="{{.name}}", sendSingle=True),  # not JSON: every message dropped
        ],
    )
    loader = loader_for(processes, env)
    rows = [{"n": n, "name": f"x{n}", "nested": {"v": n * 10}} for n in (1, 2, 4, 5)]
    # the rows of {} records are {}: not empty results, so kept without sendSingle
    assert wait_messages(out["keep"], 6) == [[rows[0]], [rows[1]], [{}], [rows[2]], [rows[3]], [{}]]
    assert wait_messages(out["omit"], 4) == rows
    assert wait_messages(out["single"], 4) == [{"id": r["n"], "v": r["n"] * 10, "all": r} for r in rows]
    array = wait_messages(out["array"], 6)
    assert array[:2] == [{"first": rows[0], "name": "x1"}, {"first": rows[1], "name": "x2"}]
    assert array[2] == {"first": {}, "name": "<no value>"}  # Go prints a missing key so
    assert sink_messages(out["bad"]) == []
    assert loader.find("rule.stopped", rule="r1") == []


def test_a_batching_sdk_sink_gets_batches_of_the_same_messages(processes, env):
    install_seqsrc(env["plugins"])
    observed = install_batchfix(env["plugins"])
    total = 2000
    seq_config(env["etc"], default={"count": total})
    stream(env["data"])
    arrays, single = env["out"] / "arrays.txt", env["out"] / "single.txt"
    write_json(
        env["data"] / "rules" / "r1.json",
        {
            "id": "r1",
            "sql": "SELECT n FROM demo",
            "actions": [
                {"probe": {"path": str(arrays), "requireAck": True}},
                {"probe": {"path": str(single), "requireAck": True, "sendSingle": True}},
            ],
        },
    )
    loader = loader_for(processes, env, extra="batch: {max_records: 100}\n")
    assert loader.wait_for("plugin.running", plugin="batchfix")["capabilities"] == {"batch": 1, "ackWindow": 1024}
    for path in (arrays, single):
        wait_until(
            lambda path=path: len(probed_messages(path)) >= total, timeout=30, what=f"{total} messages in {path.name}"
        )
    assert [m for m, _ in probed_messages(arrays)] == [[{"n": n}] for n in range(1, total + 1)]
    assert [m for m, _ in probed_messages(single)] == [{"n": n} for n in range(1, total + 1)]
    sizes = noted(observed, "batches.txt")
    assert sizes and max(sizes) > 1 and max(sizes) <= 100, sizes


def test_a_rule_with_an_unsupported_property_is_refused_precisely(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    stream(env["data"])
    rule_file(
        env["data"],
        "r1",
        "SELECT n FROM demo",
        [collect(env["out"] / "x.jsonl", dataTemplate="{{range .}}{{.n}}{{end}}")],
    )
    loader = loader_for(processes, env)
    error = loader.wait_for("rule.error", rule="r1")["error"]
    assert error.endswith(
        "r1.json at /actions/0/collect: dataTemplate: {{range .}}: {{range}} (control "
        "structures) is not supported by the loader; supported: {{.}}, {{.field}}, {{.a.b}}, "
        '{{index X 0}}, {{index X 0 "key"}}, {{json X}}, {{toJson X}}, {{/* comment */}}'
    )
