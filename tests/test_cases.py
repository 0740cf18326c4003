"""Every case copied from shared/cases and the real runner output: the audit must find
exactly what its expected.json says, and what its note says."""

from __future__ import annotations

import json

import pytest
from conftest import (
    CASES,
    REALRUNS,
    all_case_dirs,
    assert_main_results_equal,
    audit_case,
    expected_view,
)

SIMPLE_FIELDS = (
    "bench_dirs_count",
    "claimed_rows",
    "drifted_keys",
    "excluded_dirs",
    "inert",
    "missing_runs",
    "phantom_keys",
    "phantom_rows_count",
    "real_run_count_all",
    "real_run_count_distinct",
    "unique_combinations",
)


@pytest.mark.parametrize("case_dir", all_case_dirs(), ids=lambda path: path.name)
def test_case_matches_expected(case_dir, tmp_path):
    expected = json.loads((case_dir / "expected.json").read_text())

    result, frames = audit_case(case_dir, tmp_path)
    found = expected_view(result.truth, frames["main_results.csv"])

    for field in SIMPLE_FIELDS:
        assert found[field] == expected[field], field
    assert_main_results_equal(found["main_results"], expected["main_results"])


def test_bom_crlf_list_names_the_missing_dir(tmp_path):
    result, _ = audit_case(CASES / "bom_crlf_list", tmp_path)

    [missing] = result.truth["excluded"]
    assert missing["code"] == "bench_dir_missing"
    assert missing["path"] == "runs/benchmarks/gone_20260101_000002"


def test_bool_spellings_unmatchable_row_says_why(tmp_path):
    result, _ = audit_case(CASES / "bool_spellings", tmp_path)

    [phantom] = result.truth["phantom_rows"]
    assert phantom["row"] == 4
    assert phantom["reason"].startswith("use_edgar_unreadable: use_edgar 'maybe'")
    statuses = result.truth["claimed_table"]["status_counts"]
    assert statuses == {"backed": 0, "drifted": 3, "phantom": 1}


def test_nan_tokens_stay_out_of_every_output(tmp_path):
    result, frames = audit_case(CASES / "nan_tokens", tmp_path)

    truth_text = (tmp_path / "analysis" / "benchmark_truthfulness.json").read_text()
    for token in ("NaN", "Infinity"):
        assert token not in truth_text
    json.loads(truth_text, parse_constant=lambda token: pytest.fail(f"non-strict {token}"))

    [row] = frames["main_results.csv"].to_dict(orient="records")
    assert row["note"] == "mae: 1 of 2 runs finite; r2: 0 of 2 runs finite"
    for name in ("main_results.csv", "efficiency.csv"):
        text = (tmp_path / "paper_tables" / name).read_text().lower()
        assert "nan" not in text and "inf" not in text
    runs = result.truth["real_runs"]
    assert [run["nonfinite_metrics"] for run in runs] == [["r2"], ["mae", "r2"]]


def test_null_key_field_excludes_both_results_naming_the_field(tmp_path):
    result, _ = audit_case(CASES / "null_key_field", tmp_path)

    excluded = result.truth["excluded"]
    assert [(e["code"], e["item"]) for e in excluded] == [
        ("key_field_missing", "results[0]"),
        ("key_field_missing", "results[1]"),
    ]
    assert all("fusion_type" in e["detail"] for e in excluded)
    assert result.truth["claimed_table"]["status_counts"] == {
        "backed": 1,
        "drifted": 0,
        "phantom": 1,
    }


def test_same_dir_listed_twice_reports_each_repeat(tmp_path):
    result, _ = audit_case(CASES / "same_dir_listed_twice", tmp_path)

    repeats = [w for w in result.truth["warnings"] if w["code"] == "bench_dir_listed_again"]
    assert [(w["path"], w["item"]) for w in repeats] == [
        ("runs/orchestrator/s1/bench_dirs_all.txt:3", "runs/benchmarks/main_20260101_000000"),
        ("runs/orchestrator/s1/bench_dirs_all.txt:4", "runs/benchmarks/latest"),
    ]


def test_single_seed_std_is_blank(tmp_path):
    audit_case(CASES / "single_seed_std", tmp_path)

    text = (tmp_path / "paper_tables" / "main_results.csv").read_text().splitlines()
    tcn = next(line for line in text if ",tcn," in line)
    assert tcn == "main,tcn,concat,base,True,0.55,0.275,0.30250000000000005,0.5,,,,,1,"


def test_realruns_failed_dir_and_phantom_rows(tmp_path):
    result, _ = audit_case(REALRUNS, tmp_path)
    truth = result.truth

    [failed] = truth["excluded"]
    assert failed["code"] == "status_run_not_ok"
    assert "edgar_join_valid_rate_zero" in failed["detail"]
    phantoms = truth["phantom_rows"]
    assert sum(row["key"]["exp_name"] == "b11_v2_edgar_off_h60_sf0" for row in phantoms) == 24
    assert [row["key"]["backbone"] for row in phantoms if row["row"] == 19] == ["tft"]
    [drifted] = truth["drifted_rows"]
    n_runs = next(cell for cell in drifted["cells"] if cell["column"] == "n_runs")
    assert (n_runs["claimed"], n_runs["true"]) == ("3", 2)
    rmse_mean = next(cell for cell in drifted["cells"] if cell["column"] == "rmse_mean")
    assert (rmse_mean["claimed"], rmse_mean["true"]) == ("799.5826561870518", 760.3808074659978)
