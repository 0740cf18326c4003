"""The two papermill notebooks as papermill sees and runs them.

The committed sources must declare the expected parameters, carry no outputs and echo
their normalised parameters right after the parameters cell. Executed with papermill on
the bundled realruns fixture (from a temporary copy, with paths relative to a working
directory), they must run without an error, echo ``host_tag`` 4090 as the text "4090",
write every output, show the 25 phantom rows and leak no absolute path or host name.
A host tag that is not allowed must stop 01 before it writes anything.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import pytest
from conftest import REALRUNS, REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
AUDIT_NB = "01_audit.ipynb"
TABLES_NB = "02_tables.ipynb"
SOURCE_DATE_EPOCH = "1767225600"  # the same pin as conftest's autouse fixture

AUDIT_PARAMETERS = {
    "host_tag",
    "bench_list",
    "output_dir",
    "paper_tables_dir",
    "project_root",
    "allowed_host_tags",
    "rel_tol",
    "abs_tol",
    "strict",
    "progress",
}
TABLES_PARAMETERS = {
    "host_tag",
    "truthfulness_json",
    "output_dir",
    "project_root",
    "allow_changed_artifacts",
    "decimals",
}
NORMALISER = {AUDIT_NB: "audit_parameters", TABLES_NB: "tables_parameters"}
DEFAULT_ALLOWED_HOST_TAGS = ["3090", "4090"]

AUDIT_OUTPUTS = (
    "benchmark_truthfulness.json",
    "benchmark_truthfulness.md",
    "claimed_main_results_marked.csv",
    "logs/benchmark_truthfulness_4090.log",
)
TABLES_OUTPUTS = ("main_results.csv", "efficiency.csv", "logs/tables_4090.log")


def _case_paths() -> tuple[str, str, str]:
    """The realruns case as its case.json gives it: project root, bench list, claimed table."""
    case = json.loads((REALRUNS / "case.json").read_text())
    return case["project_root"], case["bench_list"], case["table"]


def _parameters_cell_index(nb: nbformat.NotebookNode, tag: str = "parameters") -> int:
    [index] = [i for i, cell in enumerate(nb.cells) if tag in cell.metadata.get("tags", [])]
    return index


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "")
        for out in cell.get("outputs", [])
        if out.output_type == "stream" and out.name == "stdout"
    )


def _echoed_parameters(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """What the cell after the injected parameters printed: a version line, then JSON."""
    echo_cell = nb.cells[_parameters_cell_index(nb, "injected-parameters") + 1]
    version_line, _, echoed = _stdout(echo_cell).partition("\n")
    assert version_line.startswith("benchtruth "), version_line
    return json.loads(echoed)


def _all_output_text(nb: nbformat.NotebookNode) -> str:
    """Everything the executed cells showed, as text (streams, reprs, errors)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            # Base64 images are not text: a short host name can occur in them by chance.
            parts.extend(
                str(value)
                for mime, value in out.get("data", {}).items()
                if not mime.startswith("image/")
            )
            parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def _leaks(text: str, root: Path, check_host: bool = True) -> list[str]:
    """The absolute paths (and, in text, the host name) found in ``text``."""
    fragments = {
        str(root),
        os.path.realpath(root),
        str(REPO_ROOT),
        os.path.realpath(REPO_ROOT),
        "/root",
        "/home/",
    }
    found = sorted(fragment for fragment in fragments if fragment in text)
    host = socket.gethostname()
    # A host name such as "vm" (this machine's) is also an ordinary fragment of words, so
    # it is matched as a whole word only. "localhost" is every machine's name and would
    # match ordinary text, so that one is not checked at all.
    whole_word = rf"(?<![A-Za-z0-9]){re.escape(host)}(?![A-Za-z0-9])"
    if check_host and host and host != "localhost" and re.search(whole_word, text):
        found.append(f"host name {host!r}")
    return found


@dataclass
class Executed:
    """The one papermill run of 01 then 02 that the execution tests share."""

    root: Path  # the working directory; every path below is relative to it
    audit_params: dict[str, Any]
    tables_params: dict[str, Any]
    audit_nb: nbformat.NotebookNode
    tables_nb: nbformat.NotebookNode
    audit_nb_path: str
    tables_nb_path: str


def _prepare_workdir(root: Path) -> tuple[str, str, str]:
    """Copy the notebooks and the realruns fixture into ``root``; return the relative
    project root, bench list and claimed tables folder."""
    shutil.copytree(REALRUNS, root / "realruns", symlinks=True)
    (root / "notebooks").mkdir()
    for name in (AUDIT_NB, TABLES_NB):
        shutil.copy2(NOTEBOOKS / name, root / "notebooks" / name)
    (root / "executed").mkdir()

    project_root, bench_list, table = _case_paths()
    project_root = os.path.normpath(os.path.join("realruns", project_root))
    return (
        project_root,
        os.path.join(project_root, bench_list),
        os.path.dirname(os.path.join(project_root, table)),
    )


def _execute(notebook: str, output: str, parameters: dict[str, Any]) -> None:
    pm.execute_notebook(
        f"notebooks/{notebook}",
        output,
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=".",
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Executed:
    root = tmp_path_factory.mktemp("papermill")
    project_root, bench_list, paper_tables_dir = _prepare_workdir(root)
    audit_params = {
        "host_tag": 4090,  # as `papermill -p host_tag 4090` hands it over
        "bench_list": bench_list,
        "output_dir": "out/analysis",
        "paper_tables_dir": paper_tables_dir,
        "project_root": project_root,
    }
    tables_params = {
        "host_tag": 4090,
        "truthfulness_json": "out/analysis/benchmark_truthfulness.json",
        "output_dir": "out/paper_tables",
        "project_root": project_root,
    }
    audit_nb_path = "executed/01_audit_4090.ipynb"
    tables_nb_path = "executed/02_tables_4090.ipynb"

    # conftest's SOURCE_DATE_EPOCH fixture is function-scoped, so pin it here as well.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        mp.chdir(root)
        _execute(AUDIT_NB, audit_nb_path, audit_params)
        _execute(TABLES_NB, tables_nb_path, tables_params)

    return Executed(
        root=root,
        audit_params=audit_params,
        tables_params=tables_params,
        audit_nb=nbformat.read(root / audit_nb_path, as_version=4),
        tables_nb=nbformat.read(root / tables_nb_path, as_version=4),
        audit_nb_path=audit_nb_path,
        tables_nb_path=tables_nb_path,
    )


# --- the committed source notebooks ------------------------------------------------------


@pytest.mark.parametrize(
    ("notebook", "expected"),
    [(AUDIT_NB, AUDIT_PARAMETERS), (TABLES_NB, TABLES_PARAMETERS)],
    ids=[AUDIT_NB, TABLES_NB],
)
def test_inspect_notebook_finds_exactly_the_parameters(notebook, expected):
    found = pm.inspect_notebook(str(NOTEBOOKS / notebook))

    assert set(found) == expected
    assert found["host_tag"]["default"] == '"4090"'


@pytest.mark.parametrize("notebook", [AUDIT_NB, TABLES_NB])
def test_source_notebook_is_clean_with_one_parameters_cell(notebook):
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)

    assert nb.metadata.kernelspec.name == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"
    index = _parameters_cell_index(nb)
    assert nb.cells[index].cell_type == "code"


@pytest.mark.parametrize("notebook", [AUDIT_NB, TABLES_NB])
def test_source_cell_after_parameters_normalises_and_prints_them(notebook):
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    next_cell = nb.cells[_parameters_cell_index(nb) + 1]
    assert next_cell.cell_type == "code"
    tree = ast.parse(next_cell.source)

    [assign] = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == NORMALISER[notebook]
    ]
    [target] = assign.targets
    # Every notebook parameter goes through the normaliser.
    passed = {keyword.arg for keyword in assign.value.keywords}
    assert passed == set(pm.inspect_notebook(str(NOTEBOOKS / notebook)))

    printed = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]
    assert any(
        isinstance(name, ast.Name) and name.id == target.id
        for call in printed
        for name in ast.walk(call)
    ), f"no print of {target.id}"


# --- the notebooks executed with papermill ------------------------------------------------


@pytest.mark.parametrize("which", ["audit", "tables"])
def test_executed_notebook_ran_every_cell_without_error(executed, which):
    nb = getattr(executed, f"{which}_nb")

    meta = nb.metadata.papermill
    assert not meta.exception
    assert meta.end_time
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"cell {index} did not run"
        errors = [out for out in cell.outputs if out.output_type == "error"]
        assert errors == [], f"cell {index}: {errors}"


@pytest.mark.parametrize("which", ["audit", "tables"])
def test_executed_notebook_records_relative_parameters(executed, which):
    nb = getattr(executed, f"{which}_nb")
    params = getattr(executed, f"{which}_params")

    meta = nb.metadata.papermill
    assert meta.parameters == params
    assert meta.output_path == getattr(executed, f"{which}_nb_path")
    for value in (meta.input_path, meta.output_path, *meta.parameters.values()):
        if isinstance(value, str):
            assert not os.path.isabs(value), value


def test_executed_audit_echoes_normalised_parameters(executed):
    echoed = _echoed_parameters(executed.audit_nb)

    assert echoed == {
        **executed.audit_params,
        "host_tag": "4090",
        "allowed_host_tags": DEFAULT_ALLOWED_HOST_TAGS,
        "rel_tol": 1e-6,
        "abs_tol": 1e-9,
        "strict": False,
        "progress": True,
    }


def test_executed_audit_shows_the_scan_progress_without_clock_figures(executed):
    texts = [
        output.get("text", "")
        for cell in executed.audit_nb.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    ]
    bars = [text for text in texts if "scanning bench dirs" in text]

    # A stream output a redraw: the first, one at every tenth of the dirs, the last.
    assert 2 <= len(bars) <= 12 and "scanning bench dirs: 100%" in bars[-1]
    assert not any("it/s" in bar or "00:" in bar for bar in bars)


def test_executed_audit_shows_the_coverage_heatmap(executed):
    images = [
        output["data"]["image/png"]
        for cell in executed.audit_nb.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]

    assert len(images) == 1
    analysis = executed.root / executed.audit_params["output_dir"]
    assert base64.b64decode(images[0]) == (analysis / "coverage_heatmap.png").read_bytes()


def test_executed_tables_echoes_normalised_parameters(executed):
    echoed = _echoed_parameters(executed.tables_nb)

    # 02 has no allowed_host_tags parameter; its normaliser adds the default.
    assert echoed == {
        "allow_changed_artifacts": False,
        "decimals": 3,
        **executed.tables_params,
        "host_tag": "4090",
        "allowed_host_tags": DEFAULT_ALLOWED_HOST_TAGS,
    }


def test_executed_notebooks_write_every_output(executed):
    analysis = executed.root / executed.audit_params["output_dir"]
    tables = executed.root / executed.tables_params["output_dir"]

    for name in AUDIT_OUTPUTS:
        assert (analysis / name).is_file(), name
    for name in TABLES_OUTPUTS:
        assert (tables / name).is_file(), name
    truth = json.loads((analysis / "benchmark_truthfulness.json").read_text())
    assert truth["host_tag"] == "4090"


def test_executed_notebooks_and_outputs_leak_no_absolute_path(executed):
    files = [
        executed.root / executed.audit_nb_path,
        executed.root / executed.tables_nb_path,
        *(path for path in (executed.root / "out").rglob("*") if path.is_file()),
    ]
    assert len(files) >= 2 + len(AUDIT_OUTPUTS) + len(TABLES_OUTPUTS)

    leaks = {}
    for path in files:
        data = path.read_bytes()
        is_text = path.suffix != ".png"
        found = _leaks(data.decode("utf-8", errors="replace"), executed.root, check_host=is_text)
        if found:
            leaks[str(path.relative_to(executed.root))] = found
    assert leaks == {}


def test_executed_audit_shows_25_phantom_rows_for_realruns(executed):
    analysis = executed.root / executed.audit_params["output_dir"]
    truth = json.loads((analysis / "benchmark_truthfulness.json").read_text())

    assert truth["phantom_rows_count"] == 25
    assert len(truth["phantom_rows"]) == 25
    assert "25 phantom rows" in _all_output_text(executed.audit_nb)


# --- a refused host tag ------------------------------------------------------------------


@pytest.mark.parametrize("host_tag", ["5090", 5090], ids=["text", "int"])
def test_audit_notebook_refuses_host_tag_not_allowed(tmp_path, monkeypatch, host_tag):
    project_root, bench_list, paper_tables_dir = _prepare_workdir(tmp_path)
    output_dir = tmp_path / "out" / "analysis"
    output_dir.mkdir(parents=True)  # as `make audit` creates it before papermill runs
    monkeypatch.chdir(tmp_path)

    with pytest.raises(pm.PapermillExecutionError) as raised:
        _execute(
            AUDIT_NB,
            "executed/01_audit_5090.ipynb",
            {
                "host_tag": host_tag,
                "bench_list": bench_list,
                "output_dir": "out/analysis",
                "paper_tables_dir": paper_tables_dir,
                "project_root": project_root,
            },
        )

    assert raised.value.ename == "ParameterError"
    assert "host_tag" in raised.value.evalue
    assert "5090" in raised.value.evalue
    assert list(output_dir.rglob("*")) == []
    failed = nbformat.read(tmp_path / "executed/01_audit_5090.ipynb", as_version=4)
    assert failed.metadata.papermill.exception
