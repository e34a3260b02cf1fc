"""The built-in functions alone: null rules for every one, JSON paths, time patterns, admission checks.

The corpus (test_corpus.py) shows them through the runtime; these pin the
rules that apply to every built-in at once, and the small languages
(JSONPath, format_time patterns) case by case.
"""

from __future__ import annotations

import datetime as dt

import pytest

from loader.rules.functions import BUILTINS, NOT_LITERAL, Builtin, FunctionError, RuleScoped
from loader.rules.functions.jsonpath import compile_path
from loader.rules.functions.time_functions import format_moment

#: eKuiper's answer for a null argument where it is not null (its function tests).
NOT_NULL_FOR_NULL = {
    "concat": "",
    "endswith": False,
    "startswith": False,
    "regexp_matches": False,
    "indexof": -1,
    "length": 0,
    "numbytes": 0,
    "isnull": True,
    "to_json": "null",
    "json_path_exists": False,
    "cardinality": 0,
}
#: functions without arguments, or whose value does not depend on them
NO_ARGUMENTS = {
    "now",
    "cur_date",
    "cur_time",
    "tstamp",
    "rand",
    "pi",
    "newuuid",
    "rule_id",
    "current_timestamp",
    "local_time",
    "local_timestamp",
    "current_date",
    "current_time",
}


@pytest.mark.parametrize("name", sorted(set(BUILTINS) - NO_ARGUMENTS))
def test_null_arguments_give_null_unless_ekuiper_says_otherwise(name):
    function = BUILTINS[name]
    assert isinstance(function, Builtin)
    args = [None] * max(function.min_args, 1)
    assert function(args) == NOT_NULL_FOR_NULL.get(name)


def test_every_builtin_checks_its_argument_count_at_admission():
    for name, function in BUILTINS.items():
        high = function.max_args if isinstance(function, Builtin) else 0
        if high is None:  # concat, coalesce: any number from their minimum
            assert function.admission_error([]) is not None, name
            continue
        problem = function.admission_error([NOT_LITERAL] * (high + 1))
        assert problem and problem.startswith(f"{name} takes ") and f"got {high + 1}" in problem, name


def test_rule_id_is_bound_per_rule():
    rule_id = BUILTINS["rule_id"]
    assert isinstance(rule_id, RuleScoped)
    assert rule_id.for_rule("a")([]) == "a" and rule_id.for_rule("b")([]) == "b"


DOC = {
    "name": {"first": "Tom"},
    "age": 37,
    "children": ["Sara", "Alex", "Jack"],
    "fav.movie": "Deer Hunter",
    "friends": [{"first": "Dale", "age": 44}, {"first": "Roger", "age": 68}, {"first": "Jane", "age": 47}],
}


@pytest.mark.parametrize(
    "path, found",
    [
        ("$.age", 37),
        ("$.name.first", "Tom"),
        ("$['fav.movie']", "Deer Hunter"),
        ('$["fav.movie"]', "Deer Hunter"),
        ("$.children[0]", "Sara"),
        ("$.children[-1]", "Jack"),
        ("$.children[*]", ["Sara", "Alex", "Jack"]),
        ("$.children[1:]", ["Alex", "Jack"]),
        ("$.friends[*].first", ["Dale", "Roger", "Jane"]),
        ("$.friends[? @.age > 60].first", ["Roger"]),
        ("$.friends[?(@.age >= 47 && @.first != 'Roger')].first", ["Jane"]),
        ('$.friends[? @.age < 45 || @.first == "Jane"].age', [44, 47]),
        ("$.friends[? @.nick].first", []),
        ("$..first", ["Tom", "Dale", "Roger", "Jane"]),
        ("$.name.*", ["Tom"]),
    ],
)
def test_json_paths(path, found):
    assert compile_path(path).query(DOC) == found


@pytest.mark.parametrize(
    "path, words",
    [
        ("age", "starts with '$'"),
        ("$.a[", "expected an index"),
        ("$.a[?(@.b > 1]", "expected ')'"),
        ("$.a['b]", "unterminated string"),
    ],
)
def test_malformed_json_paths_say_where(path, words):
    with pytest.raises(FunctionError, match="character"):
        compile_path(path)
    with pytest.raises(FunctionError) as info:
        compile_path(path)
    assert words in str(info.value)


def test_a_definite_path_to_nothing_is_an_error():
    with pytest.raises(FunctionError, match="names nothing"):
        compile_path("$.nope").query(DOC)


@pytest.mark.parametrize(
    "pattern, text",
    [
        ("YYYY-MM-dd HH:mm:ss", "2006-01-02 15:04:05"),
        ("YYYY/MM/dd HH:mm:ssSSS XXX", "2006/01/02 15:04:05.000 +00:00"),
        ("YY M d h a", "06 1 2 3 PM"),
        ("EEE EEEE MMM MMMM", "Mon Monday Jan January"),
        ("G Z X XX", "AD +0000 +00 +0000"),
        ("dd T HH", "02 T 15"),
        ("S SS", ".0 .00"),
    ],
)
def test_format_time_pattern_letters(pattern, text):
    moment = dt.datetime(2006, 1, 2, 15, 4, 5, tzinfo=dt.UTC)
    assert format_moment(moment, pattern) == text


@pytest.mark.parametrize(
    "name, args, value",
    [
        ("round", [0.5], 1.0),
        ("round", [-0.5], -1.0),
        ("round", [2.675, 2], 2.68),
        ("abs", [-2], 2),
        ("ceil", [2], 2.0),
        ("floor", [-0.5], -1.0),
        ("mod", [-7, 3], -1.0),
        ("log", [0], None),
        ("conv", ["ff", 16, 2], "11111111"),
        ("conv", ["7", 10, 36], "7"),
        ("cast", ["1.5", "float"], 1.5),
        ("cast", [3.9, "bigint"], 3),
        ("cast", [-3.9, "bigint"], -3),
        ("cast", ["true", "boolean"], True),
        ("cast", [{"a": 1}, "string"], '{"a":1}'),
        ("substring", ["héllo", 1, 2], "é"),
        ("regexp_replace", ["a1b2", "([a-z])([0-9])", "$2$1"], "1a2b"),
        ("trunc", [-1.999, 1], -1.9),
        ("dec2hex", [-255], "-0xff"),
    ],
)
def test_values(name, args, value):
    result = BUILTINS[name](args)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    "name, args, words",
    [
        ("cast", ["abc", "bigint"], "cannot convert string 'abc' to bigint"),
        ("cast", ["yes", "boolean"], "cannot convert string 'yes' to boolean"),
        ("abs", ["x"], "abs's argument must be a number"),
        ("substring", ["abc", 2, 1], "must not be greater than its end"),
        ("decode", ["@@", "base64"], "cannot decode base64"),
        ("chr", ["ab"], "a code or a single character"),
        ("format_time", ["yesterday", "YYYY"], "cannot read 'yesterday' as a datetime"),
    ],
)
def test_failures_name_the_value(name, args, words):
    with pytest.raises(FunctionError) as info:
        BUILTINS[name](args)
    assert words in str(info.value)
