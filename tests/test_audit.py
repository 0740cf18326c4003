"""The audit from end to end as functions: refusals, evidence files, determinism, no leaks."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import statistics
from pathlib import Path

import pytest
from conftest import CASES, REALRUNS, REPO_ROOT, all_case_dirs, audit_case, output_bytes

from benchtruth_utils import (
    BenchListError,
    ParameterError,
    TruthFileError,
    build_tables,
    run_audit,
)
from benchtruth_utils.params import normalise_host_tag
from benchtruth_utils.truth import load_truth


def _tree_digest(root: Path) -> dict[str, tuple]:
    digest = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        content = b"" if path.is_dir() or path.is_symlink() else path.read_bytes()
        digest[str(path.relative_to(root))] = (
            info.st_mode,
            info.st_mtime_ns,
            hashlib.sha256(content).hexdigest(),
        )
    return digest


@pytest.mark.parametrize(
    ("given", "expected"), [(4090, "4090"), ("3090", "3090"), (" 4090 ", "4090")]
)
def test_normalise_host_tag_accepts_ints_and_text(given, expected):
    assert normalise_host_tag(given) == expected


@pytest.mark.parametrize("bad", ["5090", "../4090", "4090/x", "", True, None, 4090.0, "a b"])
def test_normalise_host_tag_refuses(bad):
    with pytest.raises(ParameterError, match="host_tag"):
        normalise_host_tag(bad)


def test_run_audit_refuses_a_bad_host_tag_before_writing(tmp_path):
    case = CASES / "single_seed_std"

    with pytest.raises(ParameterError, match="one of"):
        run_audit(
            host_tag="5090",
            bench_list=str(case / "runs/orchestrator/s1/bench_dirs_all.txt"),
            output_dir=str(tmp_path / "out"),
            project_root=str(case),
        )
    assert not (tmp_path / "out").exists()


def test_run_audit_refuses_a_missing_bench_list_before_writing(tmp_path):
    with pytest.raises(BenchListError, match="no such file"):
        run_audit(
            bench_list=str(tmp_path / "nope.txt"),
            output_dir=str(tmp_path / "out"),
            project_root=str(tmp_path),
        )
    assert not (tmp_path / "out").exists()


def test_run_audit_without_a_claimed_table_still_writes_evidence(tmp_path):
    result, _ = audit_case(CASES / "single_seed_std", tmp_path)

    assert result.truth["claimed_table"]["present"] is False
    assert result.marked_claimed_path is None
    assert [w["code"] for w in result.truth["warnings"]] == ["claimed_table_missing"]
    for name in ("benchmark_truthfulness.json", "benchmark_truthfulness.md"):
        assert (tmp_path / "analysis" / name).is_file()
    assert (tmp_path / "analysis" / "logs" / "benchmark_truthfulness_4090.log").is_file()


def _audit_realruns_without_claimed_table(tmp_path: Path):
    """The bundled real runs audited into ``tmp_path/analysis``, no claimed table given."""
    return run_audit(
        host_tag="4090",
        bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
        output_dir=str(tmp_path / "analysis"),
        paper_tables_dir=str(tmp_path / "no_claimed_table"),
        project_root=str(REALRUNS),
    )


def test_an_audit_without_a_claimed_table_removes_an_earlier_audits_marked_copy(tmp_path):
    # The marked copy holds verdicts on one audit's claimed table; left beside the next
    # audit's truth file, a reviewer would read them as that audit's.
    audit_case(REALRUNS, tmp_path)
    analysis = tmp_path / "analysis"
    assert (analysis / "claimed_main_results_marked.csv").is_file()

    result = _audit_realruns_without_claimed_table(tmp_path)

    assert result.marked_claimed_path is None
    assert not (analysis / "claimed_main_results_marked.csv").exists()
    log = (analysis / "logs" / "benchmark_truthfulness_4090.log").read_text()
    assert (
        "removed claimed_main_results_marked.csv: it held an earlier audit's verdicts, and "
        "this audit had no claimed table" in log
    )
    assert result.truth["claimed_table"]["present"] is False


def test_an_earlier_marked_copy_that_cannot_be_removed_is_named_not_fatal(tmp_path, monkeypatch):
    audit_case(REALRUNS, tmp_path)
    analysis = tmp_path / "analysis"
    real_unlink = os.unlink

    def refused_for_the_marked_copy(path, *arguments, **keywords):
        if os.path.basename(path) == "claimed_main_results_marked.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real_unlink(path, *arguments, **keywords)

    monkeypatch.setattr(os, "unlink", refused_for_the_marked_copy)
    result = _audit_realruns_without_claimed_table(tmp_path)

    assert result.marked_claimed_path is None
    assert result.truth["claimed_table"]["present"] is False
    log = (analysis / "logs" / "benchmark_truthfulness_4090.log").read_text()
    assert "could not remove claimed_main_results_marked.csv (Permission denied)" in log
    assert str(tmp_path) not in log


def _folder_in_place_of(target: Path, tree: Path) -> dict[str, tuple]:
    """Put an empty folder where the file ``target`` is (or would be); return the digest of
    ``tree`` after, to compare with once the refused call is made."""
    if target.exists():
        target.unlink()
    target.mkdir()
    return _tree_digest(tree)


@pytest.mark.parametrize(
    "in_the_way",
    [
        "benchmark_truthfulness.md",
        "benchmark_truthfulness.json",
        "claimed_main_results_marked.csv",
        "coverage_heatmap.png",
        "logs/benchmark_truthfulness_4090.log",
        "logs/benchmark_truthfulness_4090.timings.log",
        ".benchtruth-audit.lock",
    ],
)
def test_a_folder_where_an_output_goes_is_refused_before_anything_changes(tmp_path, in_the_way):
    # Found only when the outputs were put in place, it failed the audit halfway: some
    # outputs this audit's, some the previous one's, temporary files left behind.
    audit_case(REALRUNS, tmp_path)
    analysis = tmp_path / "analysis"
    before = _folder_in_place_of(analysis / in_the_way, analysis)

    with pytest.raises(ParameterError, match="is not a folder"):
        audit_case(REALRUNS, tmp_path)

    assert _tree_digest(analysis) == before


@pytest.mark.parametrize(
    "in_the_way",
    [
        "main_results.csv",
        "efficiency.csv",
        "main_results.tex",
        "benchtruth_tables_manifest.json",
        "metrics_by_configuration.png",
        "logs/tables_4090.log",
    ],
)
def test_build_tables_refuses_a_folder_where_one_of_its_outputs_goes(tmp_path, in_the_way):
    result, _ = audit_case(REALRUNS, tmp_path)
    tables = tmp_path / "paper_tables"
    before = _folder_in_place_of(tables / in_the_way, tables)

    with pytest.raises(ParameterError, match="is not a folder"):
        build_tables(truthfulness_json=result.truth_path, output_dir=str(tables), host_tag="4090")

    assert _tree_digest(tables) == before


def test_a_lock_file_that_is_a_symbolic_link_is_refused(tmp_path):
    analysis = tmp_path / "analysis"
    analysis.mkdir()
    outside = tmp_path / "outside.lock"
    (analysis / ".benchtruth-audit.lock").symlink_to(outside)

    with pytest.raises(ParameterError, match="not a symbolic link"):
        run_audit(
            host_tag="4090",
            bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
            output_dir=str(analysis),
            project_root=str(REALRUNS),
        )

    assert not outside.exists()
    assert sorted(path.name for path in analysis.iterdir()) == [".benchtruth-audit.lock"]


def test_run_audit_marked_copy_keeps_claimed_rows_and_adds_verdicts(tmp_path):
    audit_case(REALRUNS, tmp_path)

    claimed_path = REALRUNS / "runs/orchestrator/20260129_073037/paper_tables/main_results.csv"
    with open(claimed_path, newline="") as handle:
        claimed = list(csv.reader(handle))
    with open(tmp_path / "analysis" / "claimed_main_results_marked.csv", newline="") as handle:
        marked = list(csv.reader(handle))

    assert marked[0] == [*claimed[0], "truth_status", "truth_reason"]
    assert [row[:-2] for row in marked[1:]] == claimed[1:]
    statuses = [row[-2] for row in marked[1:]]
    assert (statuses.count("backed"), statuses.count("drifted"), statuses.count("phantom")) == (
        287,
        1,
        25,
    )


@pytest.mark.parametrize("case_dir", all_case_dirs(), ids=lambda path: path.name)
def test_run_audit_outputs_carry_no_absolute_path(case_dir, tmp_path):
    audit_case(case_dir, tmp_path / "out")

    forbidden = [str(tmp_path), str(REPO_ROOT), "/root/", "/home/"]
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [word for word in forbidden if word.encode() in data], path


def test_run_audit_leaves_the_inputs_untouched(tmp_path):
    before = _tree_digest(REALRUNS)

    audit_case(REALRUNS, tmp_path)

    assert _tree_digest(REALRUNS) == before


def test_run_audit_is_byte_identical_on_the_same_inputs(tmp_path):
    audit_case(REALRUNS, tmp_path / "first")
    audit_case(REALRUNS, tmp_path / "second")

    first, second = output_bytes(tmp_path / "first"), output_bytes(tmp_path / "second")
    assert first == second
    timings = tmp_path / "first" / "analysis" / "logs" / "benchmark_truthfulness_4090.timings.log"
    assert "scan bench dirs" in timings.read_text()


def test_run_audit_generated_at_is_the_only_varying_field(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    first, _ = audit_case(CASES / "nan_tokens", tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    second, _ = audit_case(CASES / "nan_tokens", tmp_path / "b")

    assert second.truth["generated_at"] == "1970-01-01T00:00:00Z"
    first.truth.pop("generated_at")
    second.truth.pop("generated_at")
    assert first.truth == second.truth


def test_realruns_tables_match_an_independent_recomputation(tmp_path):
    audit_case(REALRUNS, tmp_path)

    # Recompute from the metrics.json files with the standard library only.
    listed = (REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt").read_text().split()
    values: dict[tuple, dict[str, list[float]]] = {}
    for bench_dir in listed:
        document = json.loads((REALRUNS / bench_dir / "metrics.json").read_text())
        if document["status"] != "success":
            continue
        for result in document["results"]:
            key = (
                document["exp_name"],
                result["backbone"],
                result["fusion_type"],
                result["module_variant"],
                str(bool(document["use_edgar"])),
            )
            for metric in ("rmse", "mae", "mse", "r2"):
                values.setdefault(key, {}).setdefault(metric, []).append(result[metric])

    with open(tmp_path / "paper_tables" / "main_results.csv", newline="") as handle:
        table = {
            (
                row["exp_name"],
                row["backbone"],
                row["fusion_type"],
                row["module_variant"],
                row["use_edgar"],
            ): row
            for row in csv.DictReader(handle)
        }
    assert sorted(table) == sorted(values)
    for key, metrics in values.items():
        row = table[key]
        assert int(row["n_runs"]) == len(metrics["rmse"])
        for metric, numbers in metrics.items():
            assert float(row[f"{metric}_mean"]) == pytest.approx(
                statistics.fmean(numbers), rel=1e-12
            )
            assert float(row[f"{metric}_std"]) == pytest.approx(statistics.stdev(numbers), rel=1e-9)


def test_report_sections_come_in_reading_order(tmp_path):
    result, _ = audit_case(REALRUNS, tmp_path)

    report = Path(result.report_path).read_text()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert [heading.split(" (")[0] for heading in headings] == [
        "## Inputs",
        "## Counts",
        "## Excluded, and why",
        "## Phantom rows",
        "## Drifted rows",
        "## Superseded runs",
        "## Coverage",
        "## Inert factors",
        "## Warnings",
        "## Where the tables will come from",
    ]


def test_audit_log_says_what_was_counted_before_what_was_left_out(tmp_path):
    result, _ = audit_case(REALRUNS, tmp_path)

    lines = Path(result.log_path).read_text().splitlines()
    counted = [i for i, line in enumerate(lines) if "| counted " in line]
    left_out = [i for i, line in enumerate(lines) if "| left out " in line]
    assert len(counted) == 13 and len(left_out) == 1
    assert max(counted) < min(left_out)
    assert "status_run_not_ok" in lines[left_out[0]]


def test_load_truth_refuses_unknown_schema_and_non_strict_json(tmp_path):
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"schema_version": 99}))
    loose = tmp_path / "loose.json"
    loose.write_text('{"schema_version": 1, "x": NaN}')

    with pytest.raises(TruthFileError, match="schema_version 99 is not one this benchtruth reads"):
        load_truth(str(future))
    with pytest.raises(TruthFileError, match="non-strict JSON token NaN"):
        load_truth(str(loose))
    with pytest.raises(TruthFileError, match="run 01_audit first"):
        load_truth(str(tmp_path / "missing.json"))


def test_outputs_leave_no_temporary_files(tmp_path):
    audit_case(CASES / "bool_spellings", tmp_path)

    assert not [
        name for _, _, files in os.walk(tmp_path) for name in files if name.endswith(".part")
    ]


def test_realruns_names_the_unlisted_dir_behind_the_tft_phantom(tmp_path):
    result, _ = audit_case(REALRUNS, tmp_path)

    unlisted = [w for w in result.truth["warnings"] if w["code"] == "bench_dir_not_listed"]
    assert [w["path"] for w in unlisted] == [
        "runs/benchmarks/b11_v2_edgar_off_h14_sf0_20261203_162205"
    ]
    reasons = {row["key"]["exp_name"]: row["reason"] for row in result.truth["phantom_rows"]}
    assert reasons["b11_v2_edgar_off_h60_sf0"] == "no_real_run: no real run of this exp_name at all"
    assert reasons["b11_v2_edgar_off_h14_sf0"] == (
        "no_real_run: its exp_name has real runs, but none of this configuration"
    )


def test_second_audit_in_the_runner_layout_audits_the_kept_claimed_table(tmp_path):
    # The runner's layout: 02 writes where the claimed table is; a second host's audit
    # (or a rerun) must not take benchtruth's own table for the claimed one.
    project = tmp_path / "project"
    shutil.copytree(REALRUNS, project, symlinks=True)
    stamp = project / "runs/orchestrator/20260129_073037"
    for host in ("4090", "3090"):
        result = run_audit(
            host_tag=host,
            bench_list=str(stamp / "bench_dirs_all.txt"),
            output_dir=str(stamp / "analysis"),
            project_root=str(project),
        )
        build_tables(result.truth_path, str(stamp / "paper_tables"), host_tag=host)

        assert result.truth["phantom_rows_count"] == 25
        assert result.truth["drifted_rows_count"] == 1

    notes = [
        w for w in result.truth["warnings"] if w["code"] == "claimed_table_written_by_benchtruth"
    ]
    assert [n["path"] for n in notes] == [
        "runs/orchestrator/20260129_073037/paper_tables/main_results.csv"
    ]
    assert result.truth["inputs"]["claimed_table"].startswith(
        "runs/orchestrator/20260129_073037/paper_tables/main_results.kept_"
    )
    log = (stamp / "paper_tables" / "logs" / "tables_3090.log").read_text()
    assert "not rebuilt by benchtruth, do not cite: ablation.parquet" in log
    assert "tables/main_results.tex" in log


def test_benchtruths_own_table_without_a_kept_claimed_one_is_no_claimed_table(tmp_path):
    # 02 wrote into an empty paper_tables folder, so nothing was kept; a second audit must
    # not audit benchtruth's own table and call it backed.
    project = tmp_path / "project"
    shutil.copytree(CASES / "single_seed_std", project, symlinks=True)
    stamp = project / "runs/orchestrator/s1"
    for _ in range(2):
        result = run_audit(
            bench_list=str(stamp / "bench_dirs_all.txt"),
            output_dir=str(stamp / "analysis"),
            project_root=str(project),
        )
        build_tables(result.truth_path, str(stamp / "paper_tables"))

    claimed = result.truth["claimed_table"]
    assert (claimed["present"], claimed["path"], claimed["rows"]) == (
        False,
        "runs/orchestrator/s1/paper_tables/main_results.csv",
        0,
    )
    assert [w["code"] for w in result.truth["warnings"]] == ["claimed_table_written_by_benchtruth"]
    assert result.truth["warnings"][0]["detail"].endswith("treated as no claimed table")


def test_what_a_paused_collector_block_made_is_old_yet_collectable():
    import gc
    import weakref

    from benchtruth_utils.audit import cycle_collector_paused

    class Node:
        pass

    was_enabled = gc.isenabled()
    with cycle_collector_paused():
        assert not gc.isenabled()
        kept = [[index] for index in range(50_000)]
        cycle = Node()
        cycle.itself = cycle
        watch = weakref.ref(cycle)
        del cycle

    assert gc.isenabled() is was_enabled
    # Not left for the young generations' next passes to walk.
    assert any(item is kept for item in gc.get_objects(generation=2))
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert watch() is None
    assert len(kept) == 50_000


def test_a_paused_collector_block_leaves_the_callers_frozen_objects_frozen():
    import gc

    from benchtruth_utils.audit import cycle_collector_paused

    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        with cycle_collector_paused():
            made = [[index] for index in range(1_000)]
        assert gc.get_freeze_count() == frozen
        assert len(made) == 1_000
    finally:
        gc.unfreeze()
