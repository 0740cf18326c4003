"""The command line: audit through papermill, verify, check-notebook."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import CASES, REALRUNS, audit_case, output_bytes

from benchtruth_utils.__main__ import main

CASE = CASES / "bool_spellings"


def test_verify_reports_unchanged_changed_and_missing_artifacts(tmp_path, capsys):
    project = tmp_path / "project"
    shutil.copytree(REALRUNS, project, symlinks=True)
    result, _ = audit_case(project, tmp_path / "out")
    truth = ["verify", "--truth", result.truth_path, "--project-root", str(project)]

    assert main(truth) == 0
    # The bench list, the claimed table, 13 dirs x 3 files and 12 run logs.
    assert capsys.readouterr().out.endswith("53 unchanged, 0 changed, 0 missing\n")

    edited = project / "runs/benchmarks/b11_v2_edgar_off_h14_sf0_20261203_160959/metrics.json"
    edited.write_text(edited.read_text().replace("877.98", "877.97", 1))
    verdict = project / "runs/benchmarks/b11_v2_edgar_off_h14_sf1_20261203_161152/STATUS_RUN.json"
    verdict.write_text(verdict.read_text().replace('"ok"', '"fail"', 1))
    gone = project / "runs/benchmarks/b11_v2_edgar_on_h45_sf0_20261203_161912/metrics.json"
    gone.unlink()

    assert main(truth) == 1
    assert capsys.readouterr().out.splitlines() == [
        "changed: runs/benchmarks/b11_v2_edgar_off_h14_sf0_20261203_160959/metrics.json",
        "changed: runs/benchmarks/b11_v2_edgar_off_h14_sf1_20261203_161152/STATUS_RUN.json",
        "missing: runs/benchmarks/b11_v2_edgar_on_h45_sf0_20261203_161912/metrics.json",
        "benchtruth verify: 50 unchanged, 2 changed, 1 missing",
    ]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    shutil.copytree(CASE, root / "case", symlinks=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("SOURCE_DATE_EPOCH", "0")
        arguments = [
            "audit",
            "--host-tag",
            "4090",
            "--bench-list",
            "case/runs/orchestrator/s1/bench_dirs_all.txt",
            "--project-root",
            "case",
            "--paper-tables-dir",
            "case/runs/orchestrator/s1/paper_tables",
            "--out",
            "out",
        ]
        notebooks = [
            "check-notebook",
            "out/analysis/01_audit_4090.ipynb",
            "out/paper_tables/02_tables_4090.ipynb",
        ]
        plain = main(arguments)
        checked = main(notebooks)
        strict = main([*arguments, "--strict"])
        # A run the strict gate stopped is a complete record, but not a passing one.
        checked_strict = main(notebooks)
    return root, plain, strict, checked, checked_strict


def test_cli_audit_writes_both_folders_and_exits_like_the_gate(cli_run):
    root, plain, strict, checked, checked_strict = cli_run

    assert (plain, checked, strict, checked_strict) == (0, 0, 1, 1)
    assert (root / "out/analysis/01_audit_4090.html").is_file()
    for name in ("analysis/benchmark_truthfulness.json", "paper_tables/main_results.csv"):
        assert (root / "out" / name).is_file()


def test_cli_audit_records_no_absolute_path_in_the_notebooks(cli_run):
    root = cli_run[0]

    for name in ("analysis/01_audit_4090.ipynb", "paper_tables/02_tables_4090.ipynb"):
        text = (root / "out" / name).read_text()
        assert str(root) not in text and "/work/" not in text
        papermill = json.loads(text)["metadata"]["papermill"]
        assert papermill["input_path"].startswith("benchtruth/notebooks/")
    for html in (root / "out").rglob("*.html"):
        text = html.read_text()
        assert str(root) not in text and "/work/" not in text and "/root/" not in text


def test_cli_audit_refusal_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    code = main(["audit", "--host-tag", "5090", "--bench-list", "x.txt", "--out", "out"])

    assert code == 2
    assert "benchtruth: refused: parameter 'host_tag' is '5090'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_audit_refused_by_the_notebook_leaves_no_local_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    code = main(["audit", "--host-tag", "4090", "--bench-list", "nope.txt", "--out", "out"])

    assert code == 2
    assert "BenchListError" in capsys.readouterr().err
    text = (tmp_path / "out/analysis/01_audit_4090.ipynb").read_text()
    assert str(tmp_path) not in text and "/work/" not in text


def test_cli_audit_refuses_paths_outside_the_working_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")

    code = main(["audit", "--host-tag", "4090", "--bench-list", "x.txt", "--out", str(tmp_path)])

    assert code == 2
    assert "parameter '--out'" in capsys.readouterr().err


def test_cli_audit_twice_with_source_date_epoch_is_byte_identical(tmp_path, monkeypatch):
    shutil.copytree(CASE, tmp_path / "case", symlinks=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    common = [
        "audit",
        "--host-tag",
        "3090",
        "--bench-list",
        "case/runs/orchestrator/s1/bench_dirs_all.txt",
        "--project-root",
        "case",
        "--paper-tables-dir",
        "case/runs/orchestrator/s1/paper_tables",
    ]

    def files():
        return output_bytes(tmp_path / "out")

    assert main([*common, "--out", "out"]) == 0
    first = files()
    assert main([*common, "--out", "out"]) == 0
    second = files()

    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    names = {path.name for path in first}
    assert {"main_results.tex", "01_audit_3090.html", "metrics_by_configuration.png"} <= names


def test_verify_checks_the_notebooks_it_is_handed(cli_run, capsys):
    root = cli_run[0]
    truth = str(root / "out/analysis/benchmark_truthfulness.json")
    notebook = str(root / "out/paper_tables/02_tables_4090.ipynb")

    code = main(
        ["verify", "--truth", truth, "--project-root", str(root / "case"), "--notebooks", notebook]
    )

    assert code == 0
    assert "notebook 02_tables_4090.ipynb: ok" in capsys.readouterr().out
