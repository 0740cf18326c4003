"""The truth document: its JSON Schema, validation on write and on load."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import pytest
from conftest import CASES, audit_case

from benchtruth_utils import TruthFileError
from benchtruth_utils.findings import Reason
from benchtruth_utils.outputs import iter_strict_json
from benchtruth_utils.truth import (
    WritingStopped,
    load_truth,
    previous_host_tag,
    truth_schema,
    validate_truth,
    write_truth,
    write_truth_unpublished,
)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    result, _ = audit_case(CASES / "null_key_field", tmp_path_factory.mktemp("audit"))
    return result.truth


def test_schema_lists_every_reason_code():
    finding = truth_schema()["properties"]["excluded"]["items"]
    assert finding["properties"]["code"]["enum"] == [reason.value for reason in Reason]


def test_an_audit_output_matches_the_schema(truth):
    validate_truth(truth)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("real_runs"), "(top): 'real_runs' is a required property"),
        (lambda t: t["real_runs"][0].update(seed=1.5), "real_runs/0/seed: 1.5 is not of type"),
        (
            lambda t: t["excluded"][0].update(code="made_up"),
            "excluded/0/code: 'made_up' is not one of",
        ),
        (
            lambda t: t["inputs"].update(bench_list="/abs/list.txt"),
            "inputs/bench_list: '/abs/list.txt' should not be valid",
        ),
    ],
)
def test_validate_truth_names_the_violation(truth, change, message):
    broken = copy.deepcopy(truth)
    change(broken)

    with pytest.raises(TruthFileError, match="does not match the schema") as caught:
        validate_truth(broken)
    assert message in str(caught.value)


def test_a_truth_writer_told_to_stop_leaves_nothing(truth, tmp_path):
    stop = threading.Event()
    stop.set()

    with pytest.raises(WritingStopped):
        write_truth_unpublished(str(tmp_path / "t.json"), truth, stop)
    assert list(tmp_path.iterdir()) == []

    written = write_truth_unpublished(str(tmp_path / "t.json"), truth, threading.Event())
    assert json.loads(Path(written).read_text()) == truth
    assert not (tmp_path / "t.json").exists()


def test_write_truth_refuses_nan_that_the_schema_lets_through(truth, tmp_path):
    broken = copy.deepcopy(truth)
    broken["real_runs"][0]["rmse"] = float("nan")

    with pytest.raises(ValueError, match="Out of range float values"):
        write_truth(str(tmp_path / "t.json"), broken)
    assert list(tmp_path.iterdir()) == []


def test_load_truth_refuses_a_document_that_breaks_the_schema(truth, tmp_path):
    broken = copy.deepcopy(truth)
    broken["real_run_count"] = -1
    path = tmp_path / "benchmark_truthfulness.json"
    path.write_text(json.dumps(broken))

    with pytest.raises(TruthFileError, match="real_run_count: -1 is less than the minimum of 0"):
        load_truth(str(path))


def test_the_truth_file_reads_back_as_written_one_run_a_line(truth, tmp_path):
    path = tmp_path / "benchmark_truthfulness.json"
    write_truth(str(path), truth)
    text = path.read_text(encoding="utf-8")

    assert json.loads(text) == truth
    run_lines = [line for line in text.splitlines() if line.startswith('    {"exp_name"')]
    assert len(run_lines) == len(truth["real_runs"]) + len(truth["superseded_runs"])
    assert json.loads(run_lines[0].rstrip(",")) == truth["real_runs"][0]
    assert text.endswith("}\n") and '\n  "schema_version": 1,\n' in text


def test_an_empty_list_and_a_nested_value_keep_plain_json_layout(tmp_path):
    document = {"real_runs": [], "inputs": {"a": [1, 2]}, "excluded": [{"b": "é"}]}
    text = "".join(iter_strict_json(document, {"real_runs", "excluded"}))

    assert json.loads(text) == document
    assert text == (
        '{\n  "real_runs": [],\n  "inputs": {\n    "a": [\n      1,\n      2\n    ]\n  },\n'
        '  "excluded": [\n    {"b": "é"}\n  ]\n}\n'
    )


def test_previous_host_tag_is_read_from_the_head_of_the_file(truth, tmp_path):
    path = tmp_path / "benchmark_truthfulness.json"
    write_truth(str(path), {**truth, "host_tag": "3090"})
    assert previous_host_tag(str(path)) == "3090"

    # A nested host_tag (a merged file's runs carry one) is not the file's.
    path.write_text('{\n  "merged_from": [\n    {"host_tag": "4090"}\n  ]\n}\n')
    assert previous_host_tag(str(path)) is None
    path.write_bytes(b"\xff\xfe not json")
    assert previous_host_tag(str(path)) is None
    assert previous_host_tag(str(tmp_path / "absent.json")) is None


def test_an_audit_replacing_another_hosts_truth_file_says_so(tmp_path, caplog):
    audit_case(CASES / "bool_spellings", tmp_path)
    path = tmp_path / "analysis" / "benchmark_truthfulness.json"
    text = path.read_text().replace('"host_tag": "4090"', '"host_tag": "3090"', 1)
    path.write_text(text)

    audit_case(CASES / "bool_spellings", tmp_path)

    assert "replacing the truth file of host 3090" in caplog.text
