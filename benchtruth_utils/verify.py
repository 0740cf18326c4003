"""Verify: has any artifact a truth file was built from changed since the audit?"""

from __future__ import annotations

import os
from typing import Any

from .artifacts import file_sha256
from .truth import load_truth


def recorded_hashes(truth: dict[str, Any]) -> dict[str, str]:
    """Every file the truth document records a sha256 of, by its path under the project root:
    the bench list, the claimed table, and each bench dir's metrics.json, STATUS_RUN.json,
    resolved_config.yaml and run log."""
    recorded = {truth["inputs"]["bench_list"]: truth["inputs"]["bench_list_sha256"]}
    if truth["inputs"]["claimed_table_sha256"]:
        recorded[truth["inputs"]["claimed_table"]] = truth["inputs"]["claimed_table_sha256"]
    for run in (*truth["real_runs"], *truth["superseded_runs"]):
        recorded[run["metrics_path"]] = run["metrics_sha256"]
    for bench_dir in truth["bench_dirs"]:
        recorded.update(bench_dir.get("artifacts", {}))
    return recorded


def verify_truth(truth_path: str, project_root: str) -> dict[str, list[str]]:
    """Re-hash every recorded artifact: lists of ``changed``, ``missing`` and ``unchanged`` paths.

    Raises
    ------
    TruthFileError
        When the truth file itself cannot be loaded.
    """
    truth = load_truth(truth_path)
    report: dict[str, list[str]] = {"changed": [], "missing": [], "unchanged": []}
    for path, recorded in sorted(recorded_hashes(truth).items()):
        found = file_sha256(os.path.join(project_root, path))
        state = "missing" if found is None else "unchanged" if found == recorded else "changed"
        report[state].append(path)
    return report
