"""The rule SQL subset: values computed record by record, and precise rejections."""

from __future__ import annotations

import pytest

from loader.rules.builtins import BUILTINS
from loader.rules.sql import SqlError, compile_query, literal_arguments, parse_select


def run(sql: str, rows: list[dict], functions: dict | None = None) -> list[dict]:
    table = {**BUILTINS, **(functions or {})}
    query = compile_query(parse_select(sql), lambda name, index: table.get(name))
    return [out for row in rows if (out := query.apply(row)) is not None]


def test_where_and_projection_with_function():
    rows = [{"n": i, "name": f"x{i}"} for i in range(5)]
    out = run("SELECT n, revert(name) AS r FROM demo WHERE n % 2 = 0", rows,
              {"revert": lambda args: args[0][::-1]})
    assert out == [{"n": 0, "r": "0x"}, {"n": 2, "r": "2x"}, {"n": 4, "r": "4x"}]


def test_star_nested_fields_arithmetic_and_case():
    rows = [{"a": {"b": {"c": 3}}, "x": 10, "y": 4}, {"a": {}, "x": 1, "y": 0}]
    out = run("SELECT *, a.b.c AS deep, x * 2 + y AS s, x / 4 AS q, "
              "CASE WHEN x > 5 THEN 'big' ELSE 'small' END AS size FROM demo", rows)
    assert out[0]["deep"] == 3 and out[0]["s"] == 24 and out[0]["q"] == 2.5 and out[0]["size"] == "big"
    assert out[0]["x"] == 10  # * keeps the input fields
    assert out[1]["deep"] is None and out[1]["size"] == "small"


def test_stream_qualified_column_and_boolean_logic():
    rows = [{"t": 20, "h": 50, "id": "a"}, {"t": 30, "h": 10, "id": "b"}, {"t": None, "h": 99, "id": "c"}]
    out = run("SELECT demo.id FROM demo WHERE NOT (t < 25 AND h > 40) OR id IN ('c') ", rows)
    assert [r["id"] for r in out] == ["b", "c"]
    out = run("SELECT id FROM demo WHERE t IS NULL", rows)
    assert out == [{"id": "c"}]
    out = run("SELECT id FROM demo WHERE t BETWEEN 25 AND 35", rows)
    assert out == [{"id": "b"}]


def test_null_comparisons_filter_out():
    assert run("SELECT * FROM demo WHERE v > 1", [{"v": None}, {}]) == []


def test_builtins_and_default_output_names():
    out = run("SELECT upper(s), concat(s, '-', n) AS c, round(f, 1) AS r FROM demo",
              [{"s": "ab", "n": 1, "f": 1.26}])
    assert out == [{"upper": "AB", "c": "ab-1", "r": 1.3}]


def test_portable_function_overrides_builtin():
    out = run("SELECT upper(s) AS u FROM demo", [{"s": "ab"}], {"upper": lambda args: "plugin"})
    assert out == [{"u": "plugin"}]


@pytest.mark.parametrize(
    "sql, words",
    [
        ("SELECT a FROM demo GROUP BY a", "GROUP BY"),
        ("SELECT a FROM demo ORDER BY a", "ORDER BY"),
        ("SELECT a FROM demo JOIN other ON demo.a = other.a", "JOIN"),
        ("SELECT array_agg(a) FROM demo", "aggregate function ARRAY_AGG (not one of eKuiper's)"),
        ("SELECT a FROM demo GROUP BY TUMBLINGWINDOW(ss, 1) HAVING a > 1 LIMIT 1", "LIMIT"),
        ("SELECT a FROM (SELECT a FROM demo)", "FROM anything but one stream"),
        ("SELECT a FROM demo WHERE a IN (SELECT b FROM x)", "subquery"),
        ("SELECT a FROM demo LIMIT 3", "LIMIT"),
        ("INSERT INTO t VALUES (1)", "INSERT statement"),
        ("SELECT a", "no FROM clause"),
    ],
)
def test_outside_subset_is_rejected_with_construct_and_position(sql, words):
    with pytest.raises(SqlError) as info:
        parse_select(sql)
    assert words in str(info.value)
    if "FROM clause" not in words:
        assert "line 1, column" in str(info.value)


def test_syntax_error_has_position():
    with pytest.raises(SqlError, match=r"line 1, column \d+"):
        parse_select("SELECT a,, FROM demo WHERE")


def test_unknown_function_is_named():
    with pytest.raises(SqlError, match="unknown function 'nope'"):
        compile_query(parse_select("SELECT nope(a) FROM demo"), lambda name, index: None)


def test_function_calls_are_listed_with_literal_validate_arguments():
    plan = parse_select("SELECT revert(name), f(1, 'x', a + 1) FROM demo")
    names = [name for name, _ in plan.functions]
    assert names == ["revert", "f"]
    assert literal_arguments(plan.functions[1][1]) == [1, "x", "a + 1"]


def test_logical_operators_are_not_function_calls():
    plan = parse_select("SELECT a AND b AS both, lower(s) FROM demo WHERE (a OR b) AND NOT c")
    assert [name for name, _ in plan.functions] == ["lower"]


def test_double_quotes_are_strings_and_backticks_quote_identifiers_as_in_ekuiper():
    """eKuiper reads "..." as a string; read as a column (ANSI), WHERE v = "v1" passed nothing, silently."""
    rows = [{"v": "v1", "load1": 2, "my col": 7}, {"v": "v2", "load1": 0.5, "my col": 8}]
    out = run('SELECT v, CASE WHEN load1 > 1 THEN "high" ELSE \'low\' END AS lvl, `my col` AS c '
              'FROM demo WHERE v = "v1" OR `my col` = 8', rows)
    assert out == [{"v": "v1", "lvl": "high", "c": 7}, {"v": "v2", "lvl": "low", "c": 8}]


def test_arrow_selects_keys_of_nested_objects_as_in_ekuiper():
    """eKuiper's json_expr examples: name->first is named "first"; ops->functionA.numArgs; a chain."""
    row = {"name": {"first": "Tom", "last": "Anderson"}, "ops": {"functionA": {"numArgs": 2}},
           "a": {"b": {"c": 5}}, "flat": 3}
    out = run("SELECT demo.name->first, ops->functionA.numArgs AS num, a->b->c AS deep, flat->x AS none "
              "FROM demo WHERE name->last = 'Anderson'", [row, {"name": {"last": "Other"}}])
    assert out == [{"first": "Tom", "num": 2, "deep": 5, "none": None}]
    assert parse_select("SELECT name->first FROM demo").functions == []  # an operator, not a function call


def test_arrow_to_something_other_than_a_field_is_refused_naming_it():
    with pytest.raises(SqlError, match="-> followed by anything but a field name"):
        parse_select("SELECT name->'first' FROM demo")
