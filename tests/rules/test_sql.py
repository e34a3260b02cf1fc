"""The rule SQL subset: values computed record by record, and precise rejections."""

from __future__ import annotations

import pytest

from loader.rules.functions import BUILTINS
from loader.rules.sql import SqlError, compile_query, literal_arguments, parse_select


def run(sql: str, rows: list[dict], functions: dict | None = None) -> list[dict]:
    table = {**BUILTINS, **(functions or {})}
    query = compile_query(parse_select(sql), lambda name, index: table.get(name))
    return [out for row in rows if (out := query.apply(row)) is not None]


def test_where_and_projection_with_function():
    rows = [{"n": i, "name": f"x{i}"} for i in range(5)]
    out = run("SELECT n, revert(name) AS r FROM demo WHERE n % 2 = 0", rows, {"revert": lambda args: args[0][::-1]})
    assert out == [{"n": 0, "r": "0x"}, {"n": 2, "r": "2x"}, {"n": 4, "r": "4x"}]


def test_star_nested_fields_arithmetic_and_case():
    rows = [{"a": {"b": {"c": 3}}, "x": 10, "y": 4}, {"a": {}, "x": 1, "y": 0}]
    out = run(
        "SELECT *, a.b.c AS deep, x * 2 + y AS s, x / 4 AS q, x / 4.0 AS f, "
        "CASE WHEN x > 5 THEN 'big' ELSE 'small' END AS size FROM demo",
        rows,
    )
    assert out[0]["deep"] == 3 and out[0]["s"] == 24 and out[0]["size"] == "big"
    assert out[0]["q"] == 2 and isinstance(out[0]["q"], int) and out[0]["f"] == 2.5  # eKuiper: int / int is an int
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
    out = run("SELECT upper(s), concat(s, '-', n) AS c, round(f, 1) AS r FROM demo", [{"s": "ab", "n": 1, "f": 1.26}])
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
        ("SELECT lag(a) FROM demo", "function LAG (an aggregate or analytic function"),
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
    out = run(
        "SELECT v, CASE WHEN load1 > 1 THEN \"high\" ELSE 'low' END AS lvl, `my col` AS c "
        'FROM demo WHERE v = "v1" OR `my col` = 8',
        rows,
    )
    assert out == [{"v": "v1", "lvl": "high", "c": 7}, {"v": "v2", "lvl": "low", "c": 8}]


def test_arrow_selects_keys_of_nested_objects_as_in_ekuiper():
    """eKuiper's json_expr examples: name->first is named "first"; ops->functionA.numArgs; a chain."""
    row = {
        "name": {"first": "Tom", "last": "Anderson"},
        "ops": {"functionA": {"numArgs": 2}},
        "a": {"b": {"c": 5}},
        "flat": 3,
    }
    out = run(
        "SELECT demo.name->first, ops->functionA.numArgs AS num, a->b->c AS deep, flat->x AS none "
        "FROM demo WHERE name->last = 'Anderson'",
        [row, {"name": {"last": "Other"}}],
    )
    assert out == [{"first": "Tom", "num": 2, "deep": 5, "none": None}]
    assert parse_select("SELECT name->first FROM demo").functions == []  # an operator, not a function call


def test_arrow_to_something_other_than_a_field_is_refused_naming_it():
    with pytest.raises(SqlError, match="-> followed by anything but a field name"):
        parse_select("SELECT name->'first' FROM demo")


def compiled(sql: str, rule_id: str = "r1"):
    return compile_query(parse_select(sql), lambda name, index: BUILTINS.get(name), rule_id)


def test_index_and_slice_as_in_ekuiper_json_expressions():
    row = {"children": ["Sara", "Alex", "Jack"], "friends": [{"last": "Murphy"}], "x": 0, "y": 2}
    out = compiled(
        "SELECT children[0] AS a, children[-1] AS b, children[1:-1] AS c, children[:2] AS d, "
        "children[1:] AS e, children[x + 1:y] AS f, friends[0]->last, children[-2] FROM demo"
    ).apply(row)
    assert out == {
        "a": "Sara",
        "b": "Jack",
        "c": ["Alex"],
        "d": ["Sara", "Alex"],
        "e": ["Alex", "Jack"],
        "f": ["Alex"],
        "last": "Murphy",
        "kuiper_field_0": "Alex",
    }


def test_index_out_of_range_fails_the_record_as_in_ekuiper():
    with pytest.raises(ValueError, match="out of range"):
        compiled("SELECT children[3] FROM demo").apply({"children": [1, 2]})
    assert compiled("SELECT children[3] AS c FROM demo").apply({}) == {"c": None}


def test_alias_usable_in_where_and_not_inside_its_own_definition():
    query = compiled("SELECT t * 2 AS t, t + 1 AS u FROM demo WHERE t > 50")
    assert [query.apply({"t": t}) for t in (20, 30)] == [None, {"t": 60, "u": 61}]


def test_null_comparisons_follow_ekuiper():
    rows = [{"a": 1}, {"a": 2}, {}]
    assert [r for r in rows if compiled("SELECT a FROM demo WHERE a != 1").apply(r)] == [{"a": 2}, {}]
    assert compiled("SELECT a = b AS eq, a < b AS lt, NOT (a > 1) AS n FROM demo").apply({}) == {
        "eq": True,
        "lt": False,
        "n": True,
    }


def test_like_in_between_and_bitwise():
    query = compiled(
        "SELECT a LIKE 'ab%' AS l, a NOT LIKE '_b_' AS nl, n IN (1, 2) AS i, n NOT BETWEEN 2 AND 3 AS nb, "
        "n & 6 AS band, n | 8 AS bor, n ^ 1 AS bx FROM demo"
    )
    assert query.apply({"a": "abc", "n": 3}) == {
        "l": True,
        "nl": False,
        "i": False,
        "nb": False,
        "band": 2,
        "bor": 11,
        "bx": 2,
    }


def test_mixed_kinds_fail_the_record_naming_both_values():
    with pytest.raises(ValueError, match=r"invalid operation string\('x'\) > bigint\(1\)"):
        compiled("SELECT a FROM demo WHERE a > 1").apply({"a": "x"})


def test_meta_reads_the_records_source_metadata():
    from loader.dataplane.source import MetaRecord

    query = compiled("SELECT meta(topic) AS t, meta(demo.qos) AS q, meta(dev->name) AS d, meta(nope) AS n FROM demo")
    row = MetaRecord({"v": 1}, {"topic": "a/b", "qos": 1, "dev": {"name": "x"}})
    assert query.apply(row) == {"t": "a/b", "q": 1, "d": "x", "n": None}
    assert query.apply({"v": 1}) == {"t": None, "q": None, "d": None, "n": None}
    assert parse_select("SELECT meta(topic) FROM demo").functions == []


def test_rule_id_is_the_compiling_rules_id():
    assert compiled("SELECT rule_id() AS r FROM demo", rule_id="mine").apply({}) == {"r": "mine"}


@pytest.mark.parametrize(
    "sql, words",
    [
        ('SELECT cast(a, "int") FROM demo', "cast: unknown type 'int'; use one of bigint, float, string, boolean"),
        ("SELECT cast(a, b) FROM demo", "cast's second argument must be a type name in quotes"),
        ('SELECT cast(a, "bytea") FROM demo', 'cast to "bytea" is not supported yet'),
        ("SELECT cast(a) FROM demo", "cast takes 2 arguments, got 1"),
        ("SELECT split_value(a, '/', -1) FROM demo", "split_value's index must not be negative"),
        ("SELECT json_path_query(a, 'x.y') FROM demo", "a JSON path starts with '$'"),
    ],
)
def test_builtin_calls_are_checked_at_admission_naming_position(sql, words):
    with pytest.raises(SqlError) as info:
        compiled(sql)
    assert words in str(info.value) and "line 1, column" in str(info.value)
    assert "sqlglot" not in str(info.value) and "Required keyword" not in str(info.value)


@pytest.mark.parametrize(
    "sql, words",
    [
        ("SELECT a || b FROM demo", "the || operator"),
        ("SELECT CAST(a AS INT) FROM demo", "line 1, column"),
        ("SELECT meta(a + 1) FROM demo", "meta takes one metadata key"),
        ("SELECT a ILIKE 'x' FROM demo", "ILIKE"),
    ],
)
def test_refusals_name_what_the_user_wrote(sql, words):
    with pytest.raises(SqlError) as info:
        parse_select(sql)
    assert words in str(info.value)
    assert "line 1, column" in str(info.value)


def test_calls_keep_the_written_argument_order_and_arrow_inside_calls():
    plan = parse_select("SELECT a + 1, upper(b), c, 2, d->e FROM demo")
    assert [p.name for p in plan.projections] == ["kuiper_field_0", "upper", "c", "kuiper_field_1", "e"]
    out = compiled(
        "SELECT log(2, 8) AS l, upper(name->first) AS u, mod(7, 4) AS m, substring(s, 1, 3) AS s2 FROM demo"
    ).apply({"name": {"first": "tom"}, "s": "abcdef"})
    assert out == {"l": 3.0, "u": "TOM", "m": 3.0, "s2": "bc"}
