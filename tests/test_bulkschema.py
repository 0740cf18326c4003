"""The column-at-a-time schema check agrees with jsonschema, value for value.

bulkschema may only say "valid" where jsonschema says so too; these tests hold it to
saying exactly what jsonschema says, on truth documents with one value changed to
anything JSON can hold, and on columns of generated values for every item schema.
"""

from __future__ import annotations

import copy
import json
import math

import jsonschema
import pytest
from conftest import REALRUNS, audit_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchtruth_utils import bulkschema
from benchtruth_utils import truth as truth_module
from benchtruth_utils.runs import RunRecord
from benchtruth_utils.truth import encode_run_records, truth_schema

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([0.0, 1.0, -1.0, 2.5]),
    st.text(max_size=4),
    st.sampled_from(
        ["", "/abs/path", "C:\\x", "runs/x", "a" * 64, "0" * 64, "result", "run_log", "4090"]
    ),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


class _Text(str):
    """A str subclass, as a library's string enum is."""


def jsonschema_says(document, schema) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(document)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    result, _ = audit_case(REALRUNS, tmp_path_factory.mktemp("audit"))
    return result.truth


def leaf_paths(value, prefix=()):
    """Every place in a document where a value sits, as a tuple of keys and indexes."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaf_paths(inner, (*prefix, key))
    elif isinstance(value, list):
        # The first and last item stand for the rest: the schema treats them all alike.
        for index in sorted({0, len(value) - 1}) if value else ():
            yield from leaf_paths(value[index], (*prefix, index))


def test_an_audit_output_passes_both(truth):
    assert bulkschema.conforms([truth], truth_schema())
    assert jsonschema_says(truth, truth_schema())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), replacement=JSON_VALUES)
def test_one_changed_value_gets_the_same_verdict(truth, data, replacement):
    paths = [path for path in leaf_paths(truth) if path]
    path = data.draw(st.sampled_from(paths))
    changed = copy.deepcopy(truth)
    holder = changed
    for step in path[:-1]:
        holder = holder[step]
    if data.draw(st.booleans()) and isinstance(holder, dict):
        del holder[path[-1]]
    else:
        holder[path[-1]] = replacement

    assert bulkschema.conforms([changed], truth_schema()) == jsonschema_says(
        changed, truth_schema()
    )


def array_item_schemas():
    schema = truth_schema()
    for name, property_schema in schema["properties"].items():
        if property_schema.get("type") == "array":
            yield name, property_schema["items"]


@pytest.mark.parametrize(("name", "item_schema"), list(array_item_schemas()))
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_columns_of_records_get_the_same_verdict(name, item_schema, data):
    # Records with the schema's own property names, each value anything JSON holds:
    # most break the schema somewhere, some do not.
    names = [*item_schema.get("properties", {}), "extra"]
    record = st.fixed_dictionaries(
        {}, optional={field: JSON_VALUES | st.just("x") for field in names}
    )
    column = data.draw(st.lists(record, min_size=1, max_size=4))

    assert bulkschema.conforms(column, item_schema) == all(
        jsonschema_says(item, item_schema) for item in column
    )


@pytest.mark.parametrize(
    ("values", "schema", "valid"),
    [
        ([1, True], {"enum": [1]}, False),
        ([1.0, 2], {"type": "integer"}, True),
        ([1.5], {"type": "integer"}, False),
        ([True], {"type": "integer"}, False),
        ([None, "a"], {"anyOf": [{"type": "string"}, {"type": "null"}]}, True),
        ([3, {"a": 1}], {"anyOf": [{"type": "integer"}, {"type": "object"}]}, True),
        ([5], {"not": {"pattern": "^/"}}, False),
        (["/x"], {"type": "string", "not": {"pattern": "^(/|[A-Za-z]:\\\\)"}}, False),
        ([math.inf], {"type": "number", "minimum": 0}, True),
        ([(1, 2)], {"type": "array"}, False),
        # A str subclass equal to a str stands in for neither.
        ([_Text("x"), "x"], {"pattern": "^y"}, False),
        (["x", _Text("x")], {"pattern": "^y"}, False),
        ([_Text("abc"), "abc"], {"minLength": 5}, False),
        ([_Text("yes")], {"pattern": "^y"}, True),
        ([math.nan, -1], {"type": "number", "minimum": 0}, False),
        ([-1, math.nan], {"type": "number", "minimum": 0}, False),
        ([(True,)], {"enum": [(1,)]}, False),
    ],
)
def test_edge_values_match_jsonschema(values, schema, valid):
    assert bulkschema.conforms(values, schema) is valid
    assert all(jsonschema_says(value, schema) for value in values) is valid


def test_an_unknown_keyword_is_declined_not_guessed():
    with pytest.raises(bulkschema.Unsupported, match="maxLength"):
        bulkschema.conforms(["abc"], {"type": "string", "maxLength": 2})


@pytest.mark.parametrize(("name", "item_schema"), list(array_item_schemas()))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_columns_of_same_keyed_records_get_the_verdict_of_their_dicts(name, item_schema, data):
    names = data.draw(
        st.lists(st.sampled_from([*item_schema.get("properties", {}), "extra"]), unique=True)
    )
    rows = data.draw(
        st.lists(st.tuples(*[JSON_VALUES | st.just("x") for _ in names]), min_size=1, max_size=4)
    )
    columns = [list(column) for column in zip(*rows, strict=True)] if names else []
    objects = [dict(zip(names, row, strict=True)) for row in rows]

    if not names:
        return
    assert bulkschema.columns_conform(names, columns, item_schema) == bulkschema.conforms(
        objects, item_schema
    )


def test_run_records_encode_to_the_lines_their_dicts_would(truth):
    runs = truth["real_runs"][:5]
    records = [
        RunRecord(**{**run, "nonfinite_metrics": tuple(run["nonfinite_metrics"])}) for run in runs
    ]

    lines = encode_run_records(records)

    assert [json.loads(line) for line in lines] == runs


# Values a run record's fields may hold, and some they should not: each line must read
# back as exactly the value json writes for the record (types, -0.0 and key order
# included), by orjson or, where orjson cannot (a long integer, a lone surrogate), by json.
RECORD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1e-300, 5e-324, 1e16, 2**63, -(2**63) - 1]),
    st.text(max_size=6),
    st.sampled_from(["", "é", '"', "\\", "\n", "\x00", "\u2028", "\ud800", "runs/x/metrics.json"]),
)
NONFINITE_NAMES = st.lists(st.sampled_from(["rmse", "mae", "mse", "r2", "é"]), max_size=3)
RECORDS = st.builds(
    lambda values, names: RunRecord(*values)._replace(nonfinite_metrics=tuple(names)),
    st.tuples(*[RECORD_VALUES for _ in RunRecord._fields]),
    NONFINITE_NAMES,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORDS, min_size=1, max_size=6))
def test_run_lines_read_back_as_the_json_of_their_records(records):
    expected = [truth_module._ONE_LINE_ENCODER.encode(record.to_dict()) for record in records]

    lines = truth_module.run_lines(records)

    # repr tells True from 1 from 1.0, and 0.0 from -0.0; == does not.
    assert [repr(json.loads(line)) for line in lines] == [repr(json.loads(e)) for e in expected]
    assert all("\n" not in (line if isinstance(line, str) else line.decode()) for line in lines)


@pytest.mark.parametrize("field", ["rmse", "mae", "mse", "r2", "train_time_sec"])
@given(st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(0, 3))
def test_run_lines_refuse_what_json_refuses(field, bad, position):
    # orjson alone would write NaN as null without a word.
    records = [RunRecord(*[1.0] * len(RunRecord._fields)) for _ in range(4)]
    records[position] = records[position]._replace(**{field: bad})

    with pytest.raises(ValueError, match="Out of range float"):
        truth_module.run_lines(records)
    with pytest.raises(ValueError, match="Out of range float"):
        truth_module.encode_run_line(records[position]._asdict())


@pytest.mark.parametrize("fields", [1, len(RunRecord._fields) - 1, len(RunRecord._fields) + 1])
def test_run_lines_refuse_a_record_of_another_length(fields):
    with pytest.raises(ValueError, match="fields"):
        truth_module.run_lines([(1.0,) * fields])


def test_a_surrogate_pair_held_as_two_characters_is_refused_not_merged():
    # JSON can only write the pair as one character: the line would read back changed.
    record = RunRecord(*[1.0] * len(RunRecord._fields))._replace(
        exp_name="\ud83d\ude00", seed=2**64, nonfinite_metrics=()
    )

    with pytest.raises(ValueError, match="surrogate pair"):
        truth_module.run_lines([record])

    lone = record._replace(exp_name="\ud83d x \ude00")
    assert json.loads(truth_module.run_lines([lone])[0])["exp_name"] == "\ud83d x \ude00"


@given(
    st.lists(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, math.inf, 10**400])
        | st.text(max_size=2),
        max_size=8,
    )
)
def test_finite_numbers_finds_every_nan_and_infinity(values):
    # The quick sum must agree with a look at every value, overflow and mixed types included.
    expected = all(math.isfinite(value) for value in values if isinstance(value, float))

    assert truth_module._finite_numbers(values) is expected
