"""Windows, aggregates and grouping as pure logic, driven by a fake clock in milliseconds."""

from __future__ import annotations

import pytest

from loader.dataplane.source import MetaRecord
from loader.rules.aggregates import BUILTIN_AGGREGATES
from loader.rules.sql import SqlError, compile_query, parse_select
from loader.rules.windowed import EventTime
from loader.rules.windows import CountWindow, HoppingWindow, SessionWindow, SlidingWindow, Watermark
from tests.support.windows import feed, windowed

# ------------------------------------------------------------------ windows


def test_tumbling_fires_at_aligned_ends_with_rows_of_its_range():
    w = HoppingWindow(10, 10)
    assert w.add(3, "a") == [] and w.add(9, "b") == []
    assert w.deadline() == 10
    assert w.advance(9) == []
    [fired] = w.advance(10)
    assert (fired.start, fired.end, fired.rows) == (0, 10, ["a", "b"])
    assert w.deadline() == 20  # windows go on, empty or not
    [empty] = w.add(25, "c")
    assert (empty.start, empty.end, empty.rows) == (10, 20, [])
    [fired] = w.advance(31)
    assert (fired.start, fired.end, fired.rows) == (20, 30, ["c"])


def test_a_time_jump_fires_the_windows_with_rows_and_only_the_latest_empty_one():
    w = HoppingWindow(10, 10)
    w.start(0)
    w.add(5, "a")
    fired = w.advance(1_000_005)
    assert [(f.end, f.rows) for f in fired] == [(10, ["a"]), (1_000_000, [])]
    assert w.deadline() == 1_000_010


def test_hopping_rows_belong_to_every_window_covering_them():
    w = HoppingWindow(10, 5)
    fired = w.add(7, "a") + w.add(12, "b") + w.advance(20)
    assert [(f.start, f.end, f.rows) for f in fired] == [(0, 10, ["a"]), (5, 15, ["a", "b"]), (10, 20, ["b"])]


def test_where_failing_rows_count_but_are_not_in_the_window():
    w = CountWindow(2, 2)
    w.add(1, "a", kept=False)
    [fired] = w.add(2, "b")
    assert fired.rows == ["b"]


def test_count_window_with_hop_gives_the_last_rows_every_hop():
    w = CountWindow(5, 2)
    out = [f.rows for i in range(1, 11) for f in w.add(i, i)]
    assert out == [[2, 3, 4, 5, 6], [4, 5, 6, 7, 8], [6, 7, 8, 9, 10]]


def test_sliding_fires_per_row_over_the_size_before_it():
    w = SlidingWindow(10)
    assert [f.rows for f in w.add(0, "a")] == [["a"]]
    assert [f.rows for f in w.add(5, "b")] == [["a", "b"]]
    assert [(f.start, f.end, f.rows) for f in w.add(12, "c")] == [(2, 12, ["b", "c"])]
    assert w.add(13, "d", triggers=False) == []


def test_sliding_with_delay_fires_later_and_includes_rows_until_then():
    w = SlidingWindow(10, delay=5)
    assert w.add(10, "a") == []
    assert w.deadline() == 15
    w.add(14, "b", triggers=False)
    [fired] = w.advance(15)
    assert (fired.start, fired.end, fired.rows) == (0, 15, ["a", "b"])


def test_session_closes_after_the_timeout():
    w = SessionWindow(100, 10)
    w.add(1, "a")
    w.add(8, "b")
    assert w.deadline() == 18
    assert w.advance(17) == []
    [fired] = w.advance(18)
    assert (fired.start, fired.end, fired.rows) == (1, 18, ["a", "b"])


def test_session_closes_at_the_max_duration_tick():
    w = SessionWindow(20, 10)
    fired = []
    for t in range(5, 50, 5):
        fired += w.add(t, t)
    # started at 5: the first multiple of 20 at least 20 later is 40
    assert [(f.start, f.end, f.rows) for f in fired] == [(5, 40, [5, 10, 15, 20, 25, 30, 35])]


def test_watermark_orders_rows_and_drops_late_ones():
    mark = Watermark(late_tolerance=5)
    for ts in (10, 3, 12):
        assert mark.offer(ts, ts)
    assert mark.release() == [(3, 3)]  # watermark 12 - 5 = 7
    assert mark.offer(20, 20)
    assert mark.release() == [(10, 10), (12, 12)]  # watermark 15
    assert not mark.offer(14, 14)
    assert mark.late == 1


# ------------------------------------------------------------- aggregates


@pytest.mark.parametrize(
    "name, args, expected",
    [
        ("count", [[1, None, 3]], 2),
        ("sum", [[1, 2, None]], 3),
        ("sum", [[1.5, 1.5]], 3.0),
        ("sum", [[1, 2.5]], 3.5),
        ("sum", [[None]], None),
        ("avg", [[1, 2]], 1),  # integers: truncated, as eKuiper's avg
        ("avg", [[-1, -2]], -1),
        ("avg", [[1, 2.0]], 1.5),
        ("avg", [[1, 3]], 2),
        ("avg", [[]], None),
        ("min", [[3, None, 1]], 1),
        ("max", [["a", "c", "b"]], "c"),
        ("collect", [[1, None]], [1, None]),
        ("merge_agg", [[{"a": 1, "b": 2}, 5, {"a": 3}]], {"a": 3, "b": 2}),
        ("last_value", [[1, 2, None], [True, True, True]], 2),
        ("last_value", [[1, 2, None], [False, False, False]], None),
        ("var", [[1, 2, 3, 4]], 1.25),
        ("vars", [[1, 2, 3, 4]], 5 / 3),
        ("stddev", [[2, 4, 4, 4, 5, 5, 7, 9]], 2.0),
        ("stddevs", [[1]], None),
        ("percentile_cont", [[1, 2, 3, 4], [0.5] * 4], 2.5),
        ("percentile_disc", [[1, 2, 3, 4], [0.5] * 4], 2.0),
        ("deduplicate", [[{"a": 1}, {"a": 1}, {"a": 2}], [1, 1, 2], [True] * 3], [{"a": 1}, {"a": 2}]),
        ("deduplicate", [[{"a": 1}, {"a": 1}], [1, 1], [False] * 2], None),
    ],
)
def test_builtin_aggregates(name, args, expected):
    result = BUILTIN_AGGREGATES[name](args)
    assert result == pytest.approx(expected) if isinstance(expected, float) else result == expected
    assert type(result) is type(expected)


def test_sum_of_strings_is_an_error():
    with pytest.raises(ValueError, match="not a number"):
        BUILTIN_AGGREGATES["sum"]([["a"]])


# ---------------------------------------------------------- whole queries


def test_count_window_aggregates_with_group_by_having_and_order():
    rule = windowed(
        "SELECT k, count(*) AS c, sum(v) AS s FROM s GROUP BY k, COUNTWINDOW(5) HAVING count(*) > 1 ORDER BY s DESC"
    )
    rows = [{"k": "a", "v": 1}, {"k": "b", "v": 5}, {"k": "a", "v": 2}, {"k": "c", "v": 9}, {"k": "b", "v": 1}]
    assert feed(rule, rows) == [[{"k": "b", "c": 2, "s": 6}, {"k": "a", "c": 2, "s": 3}]]


def test_non_aggregated_columns_take_the_first_row_of_the_group():
    rule = windowed("SELECT v, count(*) AS c FROM s GROUP BY COUNTWINDOW(3)")
    assert feed(rule, [{"v": 1}, {"v": 2}, {"v": 3}]) == [[{"v": 1, "c": 3}]]


def test_window_without_aggregates_emits_every_row_once_per_window():
    rule = windowed("SELECT v FROM s WHERE v > 1 GROUP BY COUNTWINDOW(3)")
    assert feed(rule, [{"v": 1}, {"v": 2}, {"v": 3}, {"v": 4}]) == [[{"v": 2}, {"v": 3}]]


def test_filter_clause_runs_before_the_window():
    rule = windowed("SELECT v FROM s GROUP BY COUNTWINDOW(2) FILTER (WHERE v > 1)")
    assert feed(rule, [{"v": 1}, {"v": 2}, {"v": 3}]) == [[{"v": 2}, {"v": 3}]]


def test_filter_and_trigger_conditions_go_in_either_order():
    for sql in (
        "SELECT v FROM s GROUP BY SLIDINGWINDOW(ss, 1) FILTER (WHERE v > 0) OVER (WHEN v > 1)",
        "SELECT v FROM s GROUP BY SLIDINGWINDOW(ss, 1) OVER (WHEN v > 1) FILTER (WHERE v > 0)",
    ):
        window = parse_select(sql).window
        assert window is not None and window.filter.sql() == "v > 0" and window.trigger.sql() == "v > 1"


def test_sliding_window_triggers_only_when_the_condition_holds():
    rule = windowed("SELECT collect(v) AS vs FROM s GROUP BY SLIDINGWINDOW(ss, 10) OVER (WHEN v > 2)")
    out = rule.on_rows([{"v": 1}], 1000) + rule.on_rows([{"v": 3}], 2000) + rule.on_rows([{"v": 2}], 20000)
    assert out == [[{"vs": [1, 3]}]]


def test_processing_time_tumbling_closes_on_the_clock_without_new_rows():
    rule = windowed(
        "SELECT count(*) AS c, window_start() AS ws, window_end() AS we FROM s GROUP BY TUMBLINGWINDOW(ss, 10)"
    )
    assert rule.on_rows([{"v": 1}, {"v": 2}], 12_000) == []
    assert rule.deadline() == 20_000
    assert rule.on_time(19_999) == []
    assert rule.on_time(20_000) == [[{"c": 2, "ws": 10_000, "we": 20_000}]]
    assert rule.deadline() == 30_000


def test_an_empty_window_gives_one_row_for_an_ungrouped_aggregate_as_in_ekuiper():
    rule = windowed("SELECT count(*) AS c, sum(v) AS s, collect(v) AS vs FROM s GROUP BY TUMBLINGWINDOW(ss, 10)")
    rule.start(3_000)
    assert rule.deadline() == 10_000  # the first window runs from the rule's start
    assert rule.on_time(10_000) == [[{"c": 0, "vs": []}]]  # a null column is left out, as in eKuiper


def test_an_empty_window_gives_nothing_with_group_by_fields_or_without_aggregates():
    for sql in (
        "SELECT k, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)",
        "SELECT v FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
        "SELECT count(*) AS c FROM s GROUP BY TUMBLINGWINDOW(ss, 10) HAVING count(*) > 0",
    ):
        rule = windowed(sql)
        rule.start(3_000)
        assert rule.on_time(10_000) == [], sql


def test_event_time_tumbling_uses_the_field_and_drops_late_rows():
    rule = windowed(
        "SELECT count(*) AS c, window_end() AS we FROM s GROUP BY TUMBLINGWINDOW(ss, 1)",
        EventTime("ts", late_tolerance=0),
    )
    out = feed(rule, [{"ts": 100}, {"ts": 900}, {"ts": 1500}])
    assert out == [[{"c": 2, "we": 1000}]]
    assert feed(rule, [{"ts": 400}]) == [] and rule.late == 1
    assert feed(rule, [{"ts": 2000}]) == [[{"c": 1, "we": 2000}]]


def test_event_time_with_late_tolerance_reorders_rows():
    rule = windowed("SELECT collect(ts) AS t FROM s GROUP BY TUMBLINGWINDOW(ms, 10)", EventTime("ts", 5))
    assert feed(rule, [{"ts": 8}, {"ts": 12}, {"ts": 7}]) == []  # watermark 7: 7 is not late
    assert feed(rule, [{"ts": 16}]) == [[{"t": [7, 8]}]]


def test_event_time_row_without_a_number_is_an_error():
    rule = windowed("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", EventTime("ts"))
    assert feed(rule, [{"ts": "soon"}]) == []
    assert "event time field 'ts'" in str(rule.errors[0])  # type: ignore[attr-defined]


def test_portable_aggregate_function_receives_arrays_per_group():
    calls = []

    def spread(args):
        calls.append(args)
        return max(args[0]) - min(args[0])

    rule = windowed(
        "SELECT k, spread(v) AS r FROM s GROUP BY k, COUNTWINDOW(3)",
        functions={"spread": spread},
        aggregates=frozenset({"spread"}),
    )
    assert feed(rule, [{"k": 1, "v": 5}, {"k": 2, "v": 4}, {"k": 1, "v": 9}]) == [[{"k": 1, "r": 4}, {"k": 2, "r": 0}]]
    assert calls == [[[5, 9]], [[4]]]


def test_aggregates_without_a_window_see_one_row():
    query = compile_query(parse_select("SELECT count(*) AS c, avg(v) AS a FROM s"), lambda n, i: None)
    assert query.grouped is None
    assert query.apply({"v": 4}) == {"c": 1, "a": 4}


def test_a_failing_group_is_reported_and_the_others_emitted():
    rule = windowed("SELECT k, sum(v) AS s FROM s GROUP BY k, COUNTWINDOW(2)")
    assert feed(rule, [{"k": 1, "v": "x"}, {"k": 2, "v": 3}]) == [[{"k": 2, "s": 3}]]
    assert "not a number" in str(rule.errors[0])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "sql, words",
    [
        ("SELECT a FROM s WHERE count(*) > 1 GROUP BY COUNTWINDOW(2)", "count is not allowed in WHERE"),
        ("SELECT a FROM s GROUP BY count(*), COUNTWINDOW(2)", "not allowed in GROUP BY"),
        ("SELECT sum(avg(a)) FROM s GROUP BY COUNTWINDOW(2)", "avg is not allowed in an aggregate function's"),
        ("SELECT a FROM s HAVING a > 1", "HAVING without a window"),
        ("SELECT a FROM s GROUP BY TUMBLINGWINDOW(hours, 1)", "time unit 'hours' is not one of dd, hh, mi, ss, ms"),
        ("SELECT a FROM s GROUP BY TUMBLINGWINDOW(ss, 0)", "size must be a positive integer"),
        ("SELECT a FROM s GROUP BY SESSIONWINDOW(ss, 1)", "SESSIONWINDOW takes 3 arguments"),
        ("SELECT a FROM s GROUP BY COUNTWINDOW(2, 3)", "hop must not be larger"),
        ("SELECT a FROM s GROUP BY COUNTWINDOW(2), TUMBLINGWINDOW(ss, 1)", "a second window"),
        ("SELECT a FROM s GROUP BY COUNTWINDOW(2) OVER (WHEN a > 1)", "only for SLIDINGWINDOW"),
        ("SELECT sum(*) FROM s GROUP BY COUNTWINDOW(2)", "sum(*) is not allowed"),
        ("SELECT avg(a, b) FROM s GROUP BY COUNTWINDOW(2)", "avg takes 1 argument, got 2"),
        ("SELECT last_value(a) FROM s GROUP BY COUNTWINDOW(2)", "last_value takes 2 arguments, got 1"),
        ("SELECT deduplicate(a, 1) FROM s GROUP BY COUNTWINDOW(2)", "must be a boolean literal (true or false)"),
        ("SELECT percentile_disc(a, 2) FROM s GROUP BY COUNTWINDOW(2)", "must be a number literal between 0 and 1"),
        ("SELECT a FROM s GROUP BY STATEWINDOW(a > 1, a < 1)", "STATEWINDOW is not supported yet"),
        ("SELECT COUNTWINDOW(2) FROM s", "COUNTWINDOW in SELECT: a window goes in GROUP BY"),
        ("SELECT a FROM s GROUP BY TUMBLINGWINDOW(ss, 1) FILTER (WHERE a > 1) OVER (WHEN a > 2)", "only for SLIDING"),
    ],
)
def test_refusals_name_the_construct_and_position(sql, words):
    with pytest.raises(SqlError) as info:
        compile_query(parse_select(sql), lambda name, index: None)
    assert words in str(info.value)
    assert "line 1, column" in str(info.value)


def test_event_time_judges_lateness_row_by_row_within_a_batch():
    rule = windowed("SELECT collect(ts) AS t FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", EventTime("ts"))
    assert feed(rule, [{"ts": 1000}, {"ts": 2500}, {"ts": 1200}, {"ts": 3000}]) == [[{"t": [1000]}], [{"t": [2500]}]]
    assert rule.late == 1


def test_meta_in_a_window_reads_the_first_rows_metadata():
    first, second = MetaRecord({"v": 1}, {"topic": "t1"}), MetaRecord({"v": 2}, {"topic": "t2"})
    rule = windowed("SELECT meta(topic) AS t, count(*) AS c FROM s GROUP BY COUNTWINDOW(2)")
    assert feed(rule, [first, second]) == [[{"t": "t1", "c": 2}]]


def test_processing_time_session_closes_on_the_clock():
    rule = windowed("SELECT collect(v) AS vs FROM s GROUP BY SESSIONWINDOW(ss, 60, 2)")
    rule.start(0)
    assert rule.on_rows([{"v": 1}], 1_000) == [] and rule.on_rows([{"v": 2}], 2_500) == []
    assert rule.deadline() == 4_500
    assert rule.on_time(4_500) == [[{"vs": [1, 2]}]]
    assert rule.deadline() is None
