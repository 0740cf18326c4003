"""Inputs a bad-input tester used to break the audit: each pinned to its correct outcome."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from benchtruth_utils import ParameterError, build_tables, run_audit
from benchtruth_utils.artifacts import parse_run_log

GOOD = {"backbone": "lstm", "fusion_type": "concat", "module_variant": "base", "seed": 0}
GOOD.update(rmse=0.5, mae=0.25, mse=0.25, r2=0.5, status="success")
DIR = "runs/benchmarks/main_20260101_000000"


def tree(root, results=None, config=None, claimed=None, listed=None, **top):
    bench = root / DIR
    (bench / "configs").mkdir(parents=True)
    document = {"exp_name": "main", "timestamp": "20260101_000000", "status": "success"}
    document.update({"use_edgar": False, **top})
    document["results"] = results if results is not None else [GOOD, {**GOOD, "seed": 1}]
    (bench / "metrics.json").write_text(json.dumps(document))
    if config is not None:
        (bench / "configs" / "resolved_config.yaml").write_text(config)
    stamp = root / "runs/orchestrator/s1"
    (stamp / "paper_tables").mkdir(parents=True)
    (stamp / "bench_dirs_all.txt").write_text("\n".join(listed or [DIR]) + "\n")
    if claimed is not None:
        (stamp / "paper_tables" / "main_results.csv").write_text(claimed, newline="")
    return stamp


def audit(root, stamp, **changes):
    arguments = {
        "bench_list": str(stamp / "bench_dirs_all.txt"),
        "output_dir": str(root / "out" / "analysis"),
        "project_root": str(root),
        **changes,
    }
    result = run_audit(**arguments)
    build_tables(result.truth_path, str(root / "out" / "tables"))
    return result


def all_output_bytes(root):
    return b"".join(p.read_bytes() for p in (root / "out").rglob("*") if p.is_file())


def test_a_runner_error_quoting_a_home_path_does_not_leak(tmp_path):
    error = "FileNotFoundError: /home/alice/data/offers.parquet"
    stamp = tree(tmp_path, status="fail", errors=[error])

    result = audit(tmp_path, stamp)

    [finding] = result.truth["excluded"]
    assert finding["detail"] == (
        "status is 'fail', not 'success'; errors: ['FileNotFoundError: [path]/offers.parquet']"
    )
    assert b"/home/alice" not in all_output_bytes(tmp_path)


def test_a_dir_name_that_is_not_utf8_is_escaped_not_fatal(tmp_path):
    stamp = tree(tmp_path)
    sibling = os.path.join(os.fsencode(tmp_path / "runs/benchmarks"), b"old_\xe9t\xe9")
    os.mkdir(sibling)
    with open(os.path.join(sibling, b"metrics.json"), "w") as handle:
        handle.write("{}")

    result = audit(tmp_path, stamp)

    unlisted = [w["path"] for w in result.truth["warnings"] if w["code"] == "bench_dir_not_listed"]
    assert unlisted == ["runs/benchmarks/old_\\udce9t\\udce9"]


def test_a_key_field_with_a_lone_surrogate_is_excluded(tmp_path):
    stamp = tree(tmp_path, results=[GOOD, {**GOOD, "seed": 1, "fusion_type": "c\ud800"}])

    result = audit(tmp_path, stamp)

    [finding] = result.truth["excluded"]
    assert (finding["code"], finding["item"]) == ("key_field_not_text", "results[1]")
    assert result.truth["real_run_count"] == 1


def test_a_fifo_in_place_of_metrics_is_unreadable_not_a_hang(tmp_path):
    stamp = tree(tmp_path)
    os.unlink(tmp_path / DIR / "metrics.json")
    os.mkfifo(tmp_path / DIR / "metrics.json")

    result = audit(tmp_path, stamp)

    [finding] = result.truth["excluded"]
    assert finding["code"] == "metrics_unreadable"
    assert "not a regular file" in finding["detail"]


@pytest.mark.parametrize(
    "config",
    [
        "x:\n  " + "- " * 30000 + "a\n",
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
            for i in range(8)
        )
        + "use_edgar: *i\n",
    ],
    ids=["deep_block_nesting", "alias_bomb_as_use_edgar"],
)
def test_hostile_yaml_is_a_finding(tmp_path, config):
    stamp = tree(tmp_path, config=config, use_edgar=None)

    result = audit(tmp_path, stamp)

    codes = {e["code"] for e in result.truth["excluded"] + result.truth["warnings"]}
    assert codes & {"config_unreadable", "use_edgar_unreadable"}
    assert all(len(e["detail"]) < 600 for e in result.truth["excluded"])


def test_a_plan_of_a_million_runs_is_refused_not_multiplied_out(tmp_path):
    models = ", ".join(f"m{i}" for i in range(100))
    fusions = ", ".join(f"f{i}" for i in range(100))
    variants = ", ".join(f"v{i}" for i in range(10))
    seeds = ", ".join(str(i) for i in range(10))
    plan = f"models: [{models}]\nfusion_types: [{fusions}]\n"
    plan += f"module_variants: [{variants}]\nseeds: [{seeds}]\n"
    stamp = tree(tmp_path, config=plan)

    result = audit(tmp_path, stamp)

    [coverage] = result.truth["coverage"]
    assert coverage["plan_code"] == "plan_unreadable"
    assert (
        coverage["plan_detail"] == "plans 1000000 runs, more than the 100000 a bench dir may plan"
    )


def test_dollar_signs_in_names_are_drawn_as_text(tmp_path):
    stamp = tree(tmp_path, results=[{**GOOD, "backbone": "cost$\\undefined$model"}])

    result = audit(tmp_path, stamp)

    assert os.path.getsize(result.heatmap_path) > 0


def test_values_near_the_float_limit_give_finite_means_and_no_inf(tmp_path):
    results = [{**GOOD, "rmse": 1e300}, {**GOOD, "seed": 1, "rmse": -1e300}]
    claimed = "exp_name,backbone,fusion_type,module_variant,use_edgar,mae_mean,n_runs\n"
    claimed += "main,lstm,concat,base,False,-1.7e308,2\n"
    stamp = tree(tmp_path, results=results, claimed=claimed)

    result = audit(tmp_path, stamp, paper_tables_dir=str(stamp / "paper_tables"))

    row = next(csv.DictReader(io.StringIO((tmp_path / "out/tables/main_results.csv").read_text())))
    assert float(row["rmse_mean"]) == 0.0
    assert float(row["rmse_std"]) == pytest.approx(1.4142135623730951e300)
    [cell] = result.truth["drifted_rows"][0]["cells"]
    assert (cell["column"], cell["true"]) == ("mae_mean", 0.25)


def test_a_latest_link_listed_first_keys_runs_by_the_real_dir(tmp_path):
    stamp = tree(tmp_path, exp_name=None, listed=["runs/benchmarks/latest", DIR])
    os.symlink("main_20260101_000000", tmp_path / "runs/benchmarks/latest")

    result = audit(tmp_path, stamp)

    assert {run["exp_name"] for run in result.truth["real_runs"]} == {"main"}
    assert [d["path"] for d in result.truth["bench_dirs"]] == [DIR]


def test_a_lone_carriage_return_in_a_cell_does_not_split_the_row(tmp_path):
    stamp = tree(tmp_path, results=[{**GOOD, "backbone": "ls\rtm"}])

    audit(tmp_path, stamp)

    with open(tmp_path / "out/tables/main_results.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert [len(row) for row in rows] == [15, 15]
    assert rows[1][1] == "ls\ntm"


def test_claimed_truth_columns_are_kept_and_ours_added_beside(tmp_path):
    claimed = "exp_name,backbone,fusion_type,module_variant,use_edgar,truth_status\n"
    claimed += "main,lstm,concat,base,False,reviewed\n"
    stamp = tree(tmp_path, claimed=claimed)

    audit(tmp_path, stamp, paper_tables_dir=str(stamp / "paper_tables"))

    text = (tmp_path / "out/analysis/claimed_main_results_marked.csv").read_text()
    assert text.splitlines()[0].endswith(
        ",truth_status,truth_status_benchtruth,truth_reason_benchtruth"
    )
    assert text.splitlines()[1].startswith("main,lstm,concat,base,False,reviewed,backed,")


def test_a_run_log_whose_clock_goes_back_gives_no_time():
    log = (
        "2026-01-02 00:00:00,000 | INFO | start\n"
        "2026-01-01 00:00:00,000 | INFO | Output: runs/benchmarks/x\n"
    )

    assert parse_run_log(log).wall_seconds is None


def test_iso_and_runner_timestamps_are_compared_as_times(tmp_path):
    stamp = tree(tmp_path, results=[GOOD], listed=[DIR, "runs/benchmarks/main_20260102_000000"])
    newer = tmp_path / "runs/benchmarks/main_20260102_000000"
    newer.mkdir()
    document = {"exp_name": "main", "timestamp": "2026-01-02T00:00:00", "status": "success"}
    document.update(use_edgar=False, results=[{**GOOD, "rmse": 0.1}])
    (newer / "metrics.json").write_text(json.dumps(document))

    result = audit(tmp_path, stamp)

    assert [run["rmse"] for run in result.truth["real_runs"]] == [0.1]


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"allowed_host_tags": "4090", "host_tag": "4"}, "allowed_host_tags"),
        ({"allowed_host_tags": None}, "allowed_host_tags"),
        ({"output_dir": "out\x00dir"}, "output_dir"),
        ({"rel_tol": float("nan")}, "rel_tol"),
    ],
)
def test_bad_parameters_are_refused_before_writing(tmp_path, changes, name):
    stamp = tree(tmp_path)

    with pytest.raises(ParameterError, match=f"parameter '{name}'"):
        audit(tmp_path, stamp, **changes)
    assert not (tmp_path / "out").exists()


def test_an_output_dir_that_is_a_file_is_refused(tmp_path):
    stamp = tree(tmp_path)
    (tmp_path / "out").write_text("not a folder")

    with pytest.raises(ParameterError, match="a file of that name is in the way"):
        audit(tmp_path, stamp, output_dir=str(tmp_path / "out"))


def test_a_claimed_cell_with_a_newline_cannot_forge_a_log_line(tmp_path):
    claimed = "exp_name,backbone,fusion_type,module_variant,use_edgar\n"
    claimed += 'main,"tft\nINFO    | audit | all good",concat,base,False\n'
    stamp = tree(tmp_path, claimed=claimed)

    result = audit(tmp_path, stamp, paper_tables_dir=str(stamp / "paper_tables"))

    lines = Path(result.log_path).read_text().splitlines()
    assert not [line for line in lines if line.startswith("INFO    | audit | all good")]
    assert any("tft\\nINFO    | audit | all good" in line for line in lines)
