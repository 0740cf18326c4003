"""Merging the truth files of several hosts (``benchtruth_utils.merge``, ``03_merge``).

The shared cases, audited as if on hosts 3090 and 4090, give small truth documents
that overlap in known ways: ``single_seed_std`` and ``bool_spellings`` both hold
``main|lstm|concat|base|True`` seeds 0 and 1 with different metrics (two conflicts),
``bool_spellings`` and ``nan_tokens`` hold ``main|lstm|concat|base|False`` seeds 0 and 1,
where ``nan_tokens`` has nulls (two conflicts), and ``na_strings_as_keys`` shares no key.
The merge must list conflicts instead of choosing, keep every run's host, and give the
same document whatever the order, however often a file is merged, and when merged files
are merged again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import pytest
from conftest import CASES, REPO_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchtruth_utils import build_tables, check_executed_notebook, run_audit, strict_failures
from benchtruth_utils.errors import ParameterError, TruthFileError
from benchtruth_utils.merge import (
    MERGED_LOG_FILE,
    MERGED_REPORT_FILE,
    NOTE_INPUTS_DIFFER,
    NOTE_MAPPING_DIFFERS,
    NOTE_PARAMETERS_DIFFER,
    ExecutedNotebookError,
    merge_parameters,
    merge_truth_documents,
    merge_truth_files,
    truth_digest,
)
from benchtruth_utils.runs import KEY_FIELDS
from benchtruth_utils.truth import TRUTH_FILE, load_truth, validate_truth

SOURCE_DATE_EPOCH = "1767225600"  # the same pin as conftest's autouse fixture
MERGE_NB = "03_merge.ipynb"
MERGE_PARAMETERS = {"truthfulness_jsons", "output_dir", "executed_notebooks"}

# Which case each test document comes from, and the host that audits it.
AUDITS = {
    "std_3090": ("single_seed_std", "3090"),
    "std_4090": ("single_seed_std", "4090"),
    "bool_4090": ("bool_spellings", "4090"),
    "nan_3090": ("nan_tokens", "3090"),
    "nan_4090": ("nan_tokens", "4090"),
    "na_4090": ("na_strings_as_keys", "4090"),
}


def _audit(case: str, out_dir: Path, host_tag: str):
    """Run 01 (as a function) on a shared case as host ``host_tag``."""
    case_dir = CASES / case
    spec = json.loads((case_dir / "case.json").read_text())
    root = case_dir / spec["project_root"]
    table = spec["table"]
    return run_audit(
        host_tag=host_tag,
        bench_list=str(root / spec["bench_list"]),
        output_dir=str(out_dir),
        paper_tables_dir=str((root / table).parent if table else out_dir / "no_claimed_table"),
        project_root=str(root),
    )


@pytest.fixture(scope="module")
def truth_files(tmp_path_factory) -> dict[str, Path]:
    """Each audit's truth file, written once for the module."""
    root = tmp_path_factory.mktemp("hosts")
    # conftest's SOURCE_DATE_EPOCH fixture is function-scoped, so pin it here as well.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        return {
            name: Path(_audit(case, root / name, host).truth_path)
            for name, (case, host) in AUDITS.items()
        }


@pytest.fixture(scope="module")
def truths(truth_files) -> dict[str, dict[str, Any]]:
    return {name: load_truth(str(path)) for name, path in truth_files.items()}


def _without_time(document: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != "generated_at"}


def _runs_by_key(document: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    return {(*(run[f] for f in KEY_FIELDS), run["seed"]): run for run in document["real_runs"]}


def _tagged(run: dict[str, Any], host_tag: str) -> dict[str, Any]:
    return {**run, "host_tag": host_tag}


STD_TRUE = ("main", "lstm", "concat", "base", True)
STD_TCN = ("main", "tcn", "concat", "base", True)
EDGAR_OFF = ("main", "lstm", "concat", "base", False)


# --- what the merge keeps ------------------------------------------------------------------


def test_merge_same_runs_on_two_hosts_keeps_one_run_each_from_the_first_host(truths):
    merged = merge_truth_documents([truths["std_4090"], truths["std_3090"]])

    validate_truth(merged)
    assert merged["host_tag"] == "merged"
    assert merged["conflicts"] == []
    expected = {key: _tagged(run, "3090") for key, run in _runs_by_key(truths["std_3090"]).items()}
    assert _runs_by_key(merged) == expected
    assert [run["host_tag"] for run in merged["real_runs"]] == ["3090"] * 3
    assert merged["real_run_count"] == 3
    assert merged["unique_combinations"] == 2
    assert [(e["host_tag"], e["sha256"]) for e in merged["merged_from"]] == sorted(
        [("3090", truth_digest(truths["std_3090"])), ("4090", truth_digest(truths["std_4090"]))]
    )
    assert merged["counts"]["conflicts"] == 0
    assert merged["counts"]["merged_files"] == 2


def test_merge_null_metrics_on_both_hosts_are_equal(truths):
    merged = merge_truth_documents([truths["nan_3090"], truths["nan_4090"]])

    assert merged["conflicts"] == []
    assert _runs_by_key(merged) == {
        key: _tagged(run, "3090") for key, run in _runs_by_key(truths["nan_3090"]).items()
    }
    assert [run["r2"] for run in merged["real_runs"]] == [None, None]


def test_merge_different_metrics_for_one_key_and_seed_are_conflicts_not_a_choice(truths):
    merged = merge_truth_documents([truths["std_3090"], truths["bool_4090"]])

    validate_truth(merged)
    std, edgar = _runs_by_key(truths["std_3090"]), _runs_by_key(truths["bool_4090"])
    assert merged["conflicts"] == [
        {
            "key": dict(zip(KEY_FIELDS, STD_TRUE, strict=True)),
            "seed": seed,
            "runs": [
                _tagged(std[(*STD_TRUE, seed)], "3090"),
                _tagged(edgar[(*STD_TRUE, seed)], "4090"),
            ],
        }
        for seed in (0, 1)
    ]
    # Neither host's run of a disputed key and seed is used.
    assert _runs_by_key(merged) == {
        (*EDGAR_OFF, 0): _tagged(edgar[(*EDGAR_OFF, 0)], "4090"),
        (*EDGAR_OFF, 1): _tagged(edgar[(*EDGAR_OFF, 1)], "4090"),
        (*STD_TCN, 0): _tagged(std[(*STD_TCN, 0)], "3090"),
    }
    assert merged["real_run_count"] == 3
    assert merged["unique_combinations"] == 2
    assert merged["counts"]["conflicts"] == 2
    assert "2 runs that disagree between hosts" in strict_failures(merged)


def test_merge_a_null_against_a_number_is_a_conflict(truths):
    merged = merge_truth_documents([truths["bool_4090"], truths["nan_3090"]])

    assert [(c["key"]["use_edgar"], c["seed"]) for c in merged["conflicts"]] == [
        (False, 0),
        (False, 1),
    ]
    assert [[run["host_tag"] for run in c["runs"]] for c in merged["conflicts"]] == [
        ["3090", "4090"],
        ["3090", "4090"],
    ]
    assert merged["conflicts"][0]["runs"][0]["r2"] is None
    assert merged["conflicts"][0]["runs"][1]["r2"] == 0.5
    assert sorted(_runs_by_key(merged)) == [(*STD_TRUE[:4], True, 0), (*STD_TRUE[:4], True, 1)]


def test_merge_one_changed_metric_is_a_conflict_with_one_run_per_host(truths):
    changed = copy.deepcopy(truths["std_4090"])
    [run] = [r for r in changed["real_runs"] if r["backbone"] == "tcn"]
    run["rmse"] = 0.56

    merged = merge_truth_documents([truths["std_3090"], changed])

    [conflict] = merged["conflicts"]
    assert (conflict["key"], conflict["seed"]) == (dict(zip(KEY_FIELDS, STD_TCN, strict=True)), 0)
    assert [(r["host_tag"], r["rmse"]) for r in conflict["runs"]] == [
        ("3090", 0.55),
        ("4090", 0.56),
    ]
    assert sorted(_runs_by_key(merged)) == [(*STD_TRUE, 0), (*STD_TRUE, 1)]

    # A third host that agrees with one side joins the conflict; it does not decide it.
    third = copy.deepcopy(truths["std_3090"])
    third["host_tag"] = "a100"
    again = merge_truth_documents([merged, third])
    [conflict] = again["conflicts"]
    assert [(r["host_tag"], r["rmse"]) for r in conflict["runs"]] == [
        ("3090", 0.55),
        ("4090", 0.56),
    ]
    assert [e["host_tag"] for e in again["merged_from"]] == ["3090", "4090", "a100"]


def test_merge_disjoint_hosts_unions_runs_and_tags_every_list(truths):
    merged = merge_truth_documents([truths["na_4090"], truths["std_3090"]])

    assert merged["conflicts"] == []
    assert merged["real_run_count"] == 6
    assert merged["unique_combinations"] == 4
    assert sorted(run["host_tag"] for run in merged["real_runs"]) == ["3090"] * 3 + ["4090"] * 3
    assert [(d["host_tag"], d["path"]) for d in merged["bench_dirs"]] == [
        ("3090", "runs/benchmarks/main_20260101_000000"),
        ("4090", "runs/benchmarks/main_20260101_000000"),
    ]
    assert merged["bench_dirs_count"] == 2
    assert [row["host_tag"] for row in merged["coverage_grid"]["rows"]] == ["3090", "4090"]
    assert merged["coverage_grid"]["columns"] == [
        "NA/None/base/0",
        "NA/None/base/1",
        "lstm/concat/base/0",
        "lstm/concat/base/1",
        "null/concat/N/A/0",
        "tcn/concat/base/0",
    ]
    assert [row["cells"] for row in merged["coverage_grid"]["rows"]] == ["..RR.R", "RR..R."]
    assert [c["host_tag"] for c in merged["coverage"]] == ["3090", "4090"]
    # Warnings allow no extra field: the same finding on two hosts is listed once.
    assert len(merged["warnings"]) == len(truths["std_3090"]["warnings"]) + len(
        truths["na_4090"]["warnings"]
    )
    assert merged["counts"]["bench_dirs_counted"] == 2
    assert merged["counts"]["results_seen"] == 6


def test_merge_notes_say_that_the_inputs_differ(truths):
    merged = merge_truth_documents([truths["std_3090"], truths["na_4090"]])

    assert len(merged["merge_notes"]) == 1
    assert merged["merge_notes"][0].startswith("the merged files were audited from different")
    first = merged["merged_from"][0]
    assert first["host_tag"] == "3090"
    assert merged["inputs"] == first["inputs"] == truths["std_3090"]["inputs"]
    assert merged["claimed_table"] == truths["std_3090"]["claimed_table"]
    assert merge_truth_documents([truths["std_3090"], truths["std_4090"]])["merge_notes"] == []


def test_merge_notes_name_different_tolerances_mappings_and_repeated_hosts(truths):
    odd = _differently_audited(truths)

    merged = merge_truth_documents(
        [odd, truths["std_3090"], _conflicting(truths), truths["std_4090"]]
    )

    assert merged["merge_notes"] == [
        NOTE_INPUTS_DIFFER,
        NOTE_PARAMETERS_DIFFER,
        NOTE_MAPPING_DIFFERS,
        "host 4090 contributes 2 truth files; their runs are merged like any other's",
    ]
    assert merged["parameters"] == truths["std_3090"]["parameters"]
    assert merged["metric_extraction_mapping"] == truths["std_3090"]["metric_extraction_mapping"]
    assert [e["parameters"]["rel_tol"] for e in merged["merged_from"]] == [1e-6, 1e-6, 1e-6, 1e-3]


def test_merge_refuses_no_document_and_an_unknown_schema_version(truths):
    with pytest.raises(ParameterError, match="at least one truth file"):
        merge_truth_documents([])

    newer = {**truths["std_3090"], "schema_version": 2}
    with pytest.raises(TruthFileError, match="schema_version 2"):
        merge_truth_documents([truths["std_4090"], newer])


def test_truth_digest_of_a_loaded_file_is_the_file_sha256(truth_files, truths):
    for name, path in truth_files.items():
        assert truth_digest(truths[name]) == hashlib.sha256(path.read_bytes()).hexdigest()


# --- properties ----------------------------------------------------------------------------


def _conflicting(truths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A 4090 file whose tcn run differs from every other host's."""
    changed = copy.deepcopy(truths["std_4090"])
    for run in changed["real_runs"]:
        if run["backbone"] == "tcn":
            run["rmse"] = 0.56
    return changed


def _differently_audited(truths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A third host that audited with another tolerance and read a metric elsewhere."""
    odd = copy.deepcopy(truths["na_4090"])
    odd["host_tag"] = "a100"
    odd["parameters"]["rel_tol"] = 1e-3
    odd["metric_extraction_mapping"]["rmse"] = "metrics.json .results[].test_rmse"
    return odd


def _pool(truths: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [*truths.values(), _conflicting(truths), _differently_audited(truths)]


NAMES = st.lists(st.integers(min_value=0, max_value=len(AUDITS) + 1), min_size=2, max_size=4)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chosen=NAMES, data=st.data())
def test_property_merge_does_not_depend_on_the_order(truths, chosen, data):
    pool = _pool(truths)
    documents = [pool[index] for index in chosen]
    shuffled = data.draw(st.permutations(documents))

    merged = merge_truth_documents(documents)

    validate_truth(merged)
    assert _without_time(merge_truth_documents(shuffled)) == _without_time(merged)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chosen=NAMES)
def test_property_merging_a_file_with_itself_changes_nothing(truths, chosen):
    pool = _pool(truths)
    documents = [pool[index] for index in chosen]
    merged = merge_truth_documents(documents)

    assert _without_time(merge_truth_documents([documents[0], documents[0]])) == _without_time(
        merge_truth_documents([documents[0]])
    )
    assert _without_time(merge_truth_documents([merged, merged])) == _without_time(merged)
    assert _without_time(merge_truth_documents(documents + documents)) == _without_time(merged)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chosen=NAMES, split=st.integers(min_value=1, max_value=3))
def test_property_merging_merged_files_changes_nothing(truths, chosen, split):
    pool = _pool(truths)
    documents = [pool[index] for index in chosen]
    merged = merge_truth_documents(documents)

    assert _without_time(merge_truth_documents([merged])) == _without_time(merged)
    # Merging in steps (two hosts now, the rest later) gives the same file.
    left, right = documents[:split], documents[split:] or documents[:1]
    in_steps = merge_truth_documents([merge_truth_documents(left), merge_truth_documents(right)])
    assert _without_time(in_steps) == _without_time(merged)


# --- the merge step on files, and 02 on its output -------------------------------------------


def test_merge_truth_files_writes_a_truth_file_summary_and_log(truth_files, tmp_path):
    paths = [str(truth_files["std_3090"]), str(truth_files["bool_4090"])]

    merged = merge_truth_files(paths, str(tmp_path / "merged"))

    written = load_truth(str(tmp_path / "merged" / TRUTH_FILE))
    assert written == merged
    assert [e["sha256"] for e in written["merged_from"]] == [
        hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in paths
    ]
    summary = (tmp_path / "merged" / MERGED_REPORT_FILE).read_text()
    assert "## Conflicts (2)" in summary
    log = (tmp_path / "merged" / MERGED_LOG_FILE).read_text()
    assert "conflict main|lstm|concat|base|True seed 0: hosts 3090, 4090" in log


def test_tables_from_a_merged_file_have_one_row_per_key(truth_files, tmp_path):
    paths = [str(truth_files[name]) for name in ("std_3090", "na_4090", "bool_4090")]
    merged = merge_truth_files(paths, str(tmp_path / "merged"))

    frames = build_tables(
        truthfulness_json=str(tmp_path / "merged" / TRUTH_FILE),
        output_dir=str(tmp_path / "paper_tables"),
        host_tag="4090",
    )

    main = frames["main_results.csv"]
    keys = list(main[list(KEY_FIELDS)].itertuples(index=False, name=None))
    assert len(keys) == len(set(keys)) == merged["unique_combinations"] == 4
    assert sorted(keys) == sorted({key[:-1] for key in _runs_by_key(merged)})
    assert int(main["n_runs"].sum()) == merged["real_run_count"] == 6
    assert STD_TRUE not in keys  # both seeds disputed: no row until the hosts agree
    log = (tmp_path / "paper_tables" / "logs" / "tables_4090.log").read_text()
    assert "audited on host merged" in log


def test_merge_refuses_an_output_dir_that_holds_an_input(truth_files):
    path = truth_files["std_3090"]
    before = path.read_bytes()

    with pytest.raises(ParameterError, match="output_dir"):
        merge_truth_files([str(path)], str(path.parent))
    assert path.read_bytes() == before


def test_merge_parameters_refuse_a_bare_path_and_an_empty_list():
    with pytest.raises(ParameterError, match="a list of paths"):
        merge_parameters("a.json", "out")
    with pytest.raises(ParameterError, match="at least one path"):
        merge_parameters([], "out")
    assert merge_parameters(["a.json "], "out", None) == {
        "truthfulness_jsons": ["a.json"],
        "output_dir": "out",
        "executed_notebooks": [],
    }


def test_merge_refuses_an_executed_notebook_that_is_not_evidence(truth_files, tmp_path):
    unexecuted = tmp_path / "01_audit_4090.ipynb"
    shutil.copy2(REPO_ROOT / "notebooks" / "01_audit.ipynb", unexecuted)
    output_dir = tmp_path / "merged"

    with pytest.raises(ExecutedNotebookError, match="no papermill metadata") as raised:
        merge_truth_files([str(truth_files["std_3090"])], str(output_dir), [str(unexecuted)])

    assert list(raised.value.problems) == [str(unexecuted)]
    assert not output_dir.exists()


# --- 03_merge.ipynb ------------------------------------------------------------------------


def test_merge_notebook_source_is_clean_with_the_three_parameters():
    nb = nbformat.read(REPO_ROOT / "notebooks" / MERGE_NB, as_version=4)

    assert set(pm.inspect_notebook(str(REPO_ROOT / "notebooks" / MERGE_NB))) == MERGE_PARAMETERS
    assert nb.metadata.kernelspec.name == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"


def test_merge_notebook_executed_by_papermill_is_evidence(truth_files, tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    shutil.copy2(REPO_ROOT / "notebooks" / MERGE_NB, tmp_path / "notebooks" / MERGE_NB)
    for name in ("std_3090", "bool_4090"):
        (tmp_path / "hosts" / name).mkdir(parents=True)
        shutil.copy2(truth_files[name], tmp_path / "hosts" / name / TRUTH_FILE)
    (tmp_path / "executed").mkdir()
    monkeypatch.chdir(tmp_path)
    parameters = {
        "truthfulness_jsons": [f"hosts/{name}/{TRUTH_FILE}" for name in ("bool_4090", "std_3090")],
        "output_dir": "merged/analysis",
        "executed_notebooks": [],
    }

    pm.execute_notebook(
        f"notebooks/{MERGE_NB}",
        "executed/03_merge.ipynb",
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=".",
    )

    assert check_executed_notebook("executed/03_merge.ipynb") == []
    merged = load_truth("merged/analysis/benchmark_truthfulness.json")
    assert [e["host_tag"] for e in merged["merged_from"]] == ["3090", "4090"]
    assert len(merged["conflicts"]) == 2
    text = json.dumps(nbformat.read("executed/03_merge.ipynb", as_version=4).cells)
    assert str(tmp_path) not in text

    # The executed notebook is itself evidence the merge accepts.
    again = merge_truth_files(
        parameters["truthfulness_jsons"], "merged/again", ["executed/03_merge.ipynb"]
    )
    assert _without_time(again) == _without_time(merged)


@pytest.mark.parametrize(
    "in_the_way",
    [TRUTH_FILE, "benchmark_truthfulness_merged.md", "logs/benchmark_truthfulness_merged.log"],
)
def test_merge_refuses_a_folder_where_one_of_its_outputs_goes(truth_files, tmp_path, in_the_way):
    output_dir = tmp_path / "merged"
    (output_dir / in_the_way).mkdir(parents=True)

    with pytest.raises(ParameterError, match="is not a folder"):
        merge_truth_files([str(truth_files["std_3090"])], str(output_dir))

    assert sorted(str(path.relative_to(output_dir)) for path in output_dir.rglob("*")) == sorted(
        {in_the_way, *(str(parent) for parent in Path(in_the_way).parents if str(parent) != ".")}
    )
