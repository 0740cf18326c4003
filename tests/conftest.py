"""Shared helpers: where the fixtures live, running an audit on one, and reading its result
in the shape of a case's ``expected.json``."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from benchtruth_utils import build_tables, run_audit
from benchtruth_utils.runs import KEY_FIELDS, QUALITY_METRICS

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
CASES = FIXTURES / "cases"
REALRUNS = FIXTURES / "realruns"


def output_bytes(out_dir: Path) -> dict[Path, bytes]:
    """Every output file's bytes by relative path, but the timings log.

    The timings log says how long each phase took: the one output meant to differ
    between reruns (beside ``generated_at``, which SOURCE_DATE_EPOCH pins).
    """
    return {
        path.relative_to(out_dir): path.read_bytes()
        for path in sorted(out_dir.rglob("*"))
        if path.is_file() and not path.name.endswith(".timings.log")
    }


def all_case_dirs() -> list[Path]:
    """Every copied case from shared/cases, plus the real runner output."""
    return [*sorted(path for path in CASES.iterdir() if path.is_dir()), REALRUNS]


def key_text(key: dict[str, Any]) -> str:
    return "|".join(str(key[field]) for field in KEY_FIELDS)


def audit_case(case_dir: Path, out_dir: Path, copy_to: Path | None = None):
    """Run 01 and 02 (as functions) on a case as its case.json describes it.

    With ``copy_to`` the case is first copied there, so that the test may change it.
    Returns (audit result, tables by file name).
    """
    if copy_to is not None:
        shutil.copytree(case_dir, copy_to, symlinks=True)
        case_dir = copy_to
    case = json.loads((case_dir / "case.json").read_text())
    root = case_dir / case["project_root"]
    table = case["table"]
    paper_tables_dir = (root / table).parent if table else out_dir / "no_claimed_table"

    result = run_audit(
        host_tag=case["host_tag"],
        bench_list=str(root / case["bench_list"]),
        output_dir=str(out_dir / "analysis"),
        paper_tables_dir=str(paper_tables_dir),
        project_root=str(root),
    )
    frames = build_tables(
        truthfulness_json=result.truth_path,
        output_dir=str(out_dir / "paper_tables"),
        host_tag=case["host_tag"],
    )
    return result, frames


def _number_or_none(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def expected_view(truth: dict[str, Any], main_results: pd.DataFrame) -> dict[str, Any]:
    """The audit's result in the shape of a case's expected.json (fields the audit makes)."""
    phantom_keys = []
    for row in truth["phantom_rows"]:
        claimed = row["claimed"]
        if row["reason"].startswith("use_edgar_unreadable"):
            phantom_keys.append("unmatchable|" + "|".join(claimed[f] for f in KEY_FIELDS))
        else:
            phantom_keys.append(key_text(row["key"]))

    main = {}
    for record in main_results.to_dict(orient="records"):
        stats = {"n_runs": int(record["n_runs"])}
        for metric in QUALITY_METRICS:
            stats[f"{metric}_mean"] = _number_or_none(record[f"{metric}_mean"])
            stats[f"{metric}_std"] = _number_or_none(record[f"{metric}_std"])
        main[key_text(record)] = stats

    missing: dict[str, list[str]] = {}
    for entry in truth["missing_runs"]:
        missing.setdefault(entry["bench_dir"], []).append(
            f"{key_text(entry['key'])}|{entry['seed']}"
        )

    claimed = truth["claimed_table"]
    return {
        "inert": truth["inert_summary"],
        "missing_runs": missing,
        "bench_dirs_count": truth["bench_dirs_count"],
        "claimed_rows": claimed["rows"] if claimed["present"] else None,
        "drifted_keys": sorted({key_text(row["key"]) for row in truth["drifted_rows"]}),
        "excluded_dirs": sorted(d["path"] for d in truth["bench_dirs"] if not d["counted"]),
        "main_results": main,
        "phantom_keys": sorted(phantom_keys),
        "phantom_rows_count": truth["phantom_rows_count"],
        "real_run_count_all": truth["real_run_count"] + len(truth["superseded_runs"]),
        "real_run_count_distinct": truth["real_run_count"],
        "unique_combinations": truth["unique_combinations"],
    }


def assert_main_results_equal(found: dict, expected: dict) -> None:
    assert sorted(found) == sorted(expected)
    for key, stats in expected.items():
        for column, value in stats.items():
            got = found[key][column]
            if value is None:
                assert got is None, (key, column, got)
            else:
                assert got == pytest.approx(value, rel=1e-12, abs=0.0), (key, column)


@pytest.fixture(autouse=True)
def _fixed_generation_time(monkeypatch):
    # Outputs carry one generation time; pin it so that tests compare whole files.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
