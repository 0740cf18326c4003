"""Executed notebooks as evidence, and the strict gate."""

from __future__ import annotations

import shutil

import nbformat
import papermill as pm
import pytest
from conftest import CASES, REPO_ROOT
from nbformat.v4 import new_code_cell, new_notebook, new_output

from benchtruth_utils import StrictAuditError, check_executed_notebook, enforce_strict
from benchtruth_utils.evidence import finish_executed_notebook

CASE = CASES / "bool_spellings"


def _run_01(tmp_path, monkeypatch, notebook="01_audit.ipynb", **extra):
    shutil.copytree(CASE, tmp_path / "case", symlinks=True)
    shutil.copy(REPO_ROOT / "notebooks" / "01_audit.ipynb", tmp_path / notebook)
    monkeypatch.chdir(tmp_path)
    parameters = {
        "host_tag": 4090,
        "bench_list": "case/runs/orchestrator/s1/bench_dirs_all.txt",
        "project_root": "case",
        "paper_tables_dir": "case/runs/orchestrator/s1/paper_tables",
        "output_dir": "out",
        **extra,
    }
    (tmp_path / "out").mkdir()
    return parameters


def test_a_complete_run_is_evidence(tmp_path, monkeypatch):
    parameters = _run_01(tmp_path, monkeypatch)

    pm.execute_notebook("01_audit.ipynb", "out/01.ipynb", parameters=parameters, progress_bar=False)

    assert check_executed_notebook("out/01.ipynb") == []


def test_a_notebook_without_the_parameters_tag_is_not_evidence(tmp_path, monkeypatch):
    # Papermill exits 0 here: it injects the parameters, but the defaults cell runs
    # after them, so the audit runs on the defaults. Only the echo shows it.
    parameters = _run_01(tmp_path, monkeypatch, notebook="untagged.ipynb")
    notebook = nbformat.read("untagged.ipynb", as_version=4)
    for cell in notebook.cells:
        if "parameters" in cell.metadata.get("tags", []):
            # Defaults that also work from here, so that nothing fails loudly.
            cell.source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
            cell.source = cell.source.replace("host_tag = 4090", "host_tag = '3090'")
            cell.source += "\nallowed_host_tags = ['3090', '4090']\nrel_tol = 1e-6\nabs_tol = 1e-9"
            cell.source += "\nstrict = False\nprogress = False"
        cell.metadata["tags"] = []
    nbformat.write(notebook, "untagged.ipynb")

    pm.execute_notebook("untagged.ipynb", "out/01.ipynb", parameters=parameters, progress_bar=False)

    assert check_executed_notebook("out/01.ipynb") == [
        "echoed parameters differ from papermill's: host_tag"
    ]


def test_strict_fails_the_notebook_after_writing_every_output(tmp_path, monkeypatch):
    parameters = _run_01(tmp_path, monkeypatch, strict=True)

    with pytest.raises(pm.PapermillExecutionError) as caught:
        pm.execute_notebook(
            "01_audit.ipynb", "out/01.ipynb", parameters=parameters, progress_bar=False
        )

    assert caught.value.ename == "StrictAuditError"
    assert "1 phantom claimed rows; 3 drifted claimed rows" in caught.value.evalue
    for name in ("benchmark_truthfulness.json", "benchmark_truthfulness.md", "01.ipynb"):
        assert (tmp_path / "out" / name).is_file()
    problems = check_executed_notebook("out/01.ipynb")
    assert "papermill recorded an exception" in problems
    assert any(problem.startswith("the strict gate failed the run: ") for problem in problems)


def _executed(cells, **papermill):
    metadata = {
        "papermill": {"end_time": "2026-01-01T00:00:00", "exception": None, "parameters": {}}
    }
    metadata["papermill"].update(papermill)
    return new_notebook(cells=cells, metadata=metadata)


def _echo_cells(text='{"host_tag": "4090"}'):
    parameters = new_code_cell("host_tag = 1", metadata={"tags": ["parameters"]}, execution_count=1)
    echo = new_code_cell(
        "print(...)",
        execution_count=2,
        outputs=[new_output("stream", name="stdout", text=f"benchtruth 0.1.0\n{text}\n")],
    )
    return [parameters, echo]


@pytest.mark.parametrize(
    ("notebook", "problem"),
    [
        (_executed(_echo_cells(), end_time=None), "no end_time: the run did not finish"),
        (_executed(_echo_cells(), exception=True), "papermill recorded an exception"),
        (
            _executed([*_echo_cells(), new_code_cell("x")]),
            "code cell 2 was not executed",
        ),
        (
            _executed(
                [
                    *_echo_cells(),
                    new_code_cell(
                        "1/0",
                        execution_count=3,
                        outputs=[new_output("error", ename="E", evalue="", traceback=[])],
                    ),
                ]
            ),
            "code cell 2 (In [3]) shows an error",
        ),
        (
            _executed(_echo_cells(), parameters={"host_tag": 3090}),
            "echoed parameters differ from papermill's: host_tag",
        ),
        (_executed(_echo_cells("no json here")), "the notebook did not echo its parameters"),
        (new_notebook(cells=_echo_cells()), "no papermill metadata: not executed by papermill"),
    ],
)
def test_check_executed_notebook_names_what_is_wrong(tmp_path, notebook, problem):
    path = tmp_path / "executed.ipynb"
    nbformat.write(notebook, path)

    assert problem in check_executed_notebook(str(path))


def test_check_executed_notebook_accepts_an_int_host_tag_echoed_as_text(tmp_path):
    path = tmp_path / "executed.ipynb"
    nbformat.write(_executed(_echo_cells(), parameters={"host_tag": 4090}), path)

    assert check_executed_notebook(str(path)) == []


def test_enforce_strict_lists_every_failing_count():
    checked = {"present": True, "sha256": "0" * 64, "rows": 3}
    truth = {
        "phantom_rows_count": 2,
        "drifted_rows_count": 0,
        "excluded": [{}],
        "conflicts": [],
        "claimed_table": checked,
    }

    with pytest.raises(StrictAuditError, match=r"^strict audit failed: 2 phantom claimed rows; 1 "):
        enforce_strict(truth)
    clean = {**truth, "phantom_rows_count": 0, "excluded": []}
    enforce_strict(clean)
    missing = {"present": False, "sha256": None, "rows": 0}
    with pytest.raises(StrictAuditError, match="1 claimed table not checked"):
        enforce_strict({**clean, "claimed_table": missing})


def test_finishing_joins_text_the_kernel_sent_in_pieces(tmp_path, monkeypatch):
    # Where the kernel cuts a cell's text depends on timing: two runs of 02 recorded the
    # same lines in different pieces, and the CLI's byte-identical rerun failed once.
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    cell = new_code_cell("print(...)", execution_count=1)
    cell.outputs = [
        new_output("stream", name="stdout", text="verified 53 files\n"),
        new_output("stream", name="stdout", text="unchanged: 53\n"),
        new_output("stream", name="stderr", text="scanning: 50%\rscanning: 100%\n"),
        new_output("execute_result", data={"text/plain": "1"}, execution_count=1),
        new_output("stream", name="stdout", text="after\n"),
    ]
    path = tmp_path / "02.ipynb"
    nbformat.write(new_notebook(cells=[cell]), str(path))

    finish_executed_notebook(str(path))

    outputs = nbformat.read(str(path), as_version=4).cells[0].outputs
    assert [(output.output_type, output.get("name"), output.get("text")) for output in outputs] == [
        ("stream", "stdout", "verified 53 files\nunchanged: 53\n"),
        ("stream", "stderr", "scanning: 100%\n"),
        ("execute_result", None, None),
        ("stream", "stdout", "after\n"),
    ]
    assert (tmp_path / "02.html").exists()
