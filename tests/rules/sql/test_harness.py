"""The corpus harness's own rules: what counts as an emission, and when two values are the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rules.sql.corpus import emissions, load_cases, same


def test_an_object_is_a_one_row_emission_and_an_array_one_emission():
    assert emissions(['{"a": 1}', '[{"a": 2}, {"a": 3}]', "[]"]) == [[{"a": 1}], [{"a": 2}, {"a": 3}], []]


@pytest.mark.parametrize(
    "expected, got, equal",
    [
        (0.1 + 0.2, 0.3, True),
        (2, 2.0, False),
        (2.0, 2, False),
        (1, True, False),
        (None, None, True),
        ({"a": [1.5, "x"]}, {"a": [1.5000000000001, "x"]}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ([[{"a": 1}]], [[{"a": 1}], [{"a": 1}]], False),
    ],
)
def test_same_compares_as_json_with_float_tolerance_and_strict_int(expected, got, equal):
    assert same(expected, got) is equal


def test_a_case_file_must_be_well_formed(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("- name: x\n  sql: SELECT a FROM demo\n  input: []\n  expected: []\n")
    with pytest.raises(ValueError, match=r"bad.yaml case 1: the sql must read FROM \{stream\}"):
        load_cases(tmp_path)
    (tmp_path / "bad.yaml").write_text("- name: x\n  sql: SELECT a FROM {stream}\n  input: []\n")
    with pytest.raises(ValueError, match="exactly one of 'expected' and 'error'"):
        load_cases(tmp_path)
