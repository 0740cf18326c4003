"""The benchmark script runs and reports what it says; its timings are not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
import bench_audit


def test_a_small_run_writes_one_row_a_measurement(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "benchmarks", "bench_audit.py"),
            "--runs",
            "96",
            "--repeat",
            "2",
            "--papermill-max",
            "0",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    rows = json.loads(out.read_text())
    assert [(row["runs"], row["what"]) for row in rows] == [(96, "floor"), (96, "audit")]
    floor, audited = rows
    assert floor["vs_floor"] == 1.0
    # The ratio is of the unrounded seconds; the file keeps them to the millisecond.
    half_ms = 0.0005
    lowest = (audited["seconds"] - half_ms) / (floor["seconds"] + half_ms)
    highest = (audited["seconds"] + half_ms) / max(floor["seconds"] - half_ms, 1e-9)
    assert lowest - 0.005 <= audited["vs_floor"] <= highest + 0.005
    assert len(audited["samples_seconds"]) == 2
    assert audited["seconds"] in audited["samples_seconds"]
    assert audited["peak_rss_mb"] > floor["peak_rss_mb"] > 0
    assert "scan bench dirs" in audited["phases"]
    assert "| 96 |" in completed.stdout


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux's /proc only")
def test_process_tree_memory_counts_children_and_names_the_largest():
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'input()'])"
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        # Wait until the grandchild exists, then read the tree.
        for _ in range(200):
            with open(f"/proc/{parent.pid}/task/{parent.pid}/children") as handle:
                if handle.read().split():
                    break
            subprocess.run(["sleep", "0.05"], check=True)
        total_kb, largest_kb = bench_audit._tree_rss_kb(parent.pid)
        alone_kb, _ = bench_audit._tree_rss_kb(os.getpid())
    finally:
        parent.communicate(b"\n", timeout=30)

    assert total_kb > largest_kb > 0
    assert alone_kb > 0
    assert bench_audit._tree_rss_kb(parent.pid) == (0, 0)


@pytest.mark.parametrize(
    "arguments",
    [["--runs", "10"], ["--runs", "0"], ["--repeat", "0"], ["--json", "/"]],
)
def test_bad_arguments_are_refused_before_anything_is_measured(tmp_path, arguments):
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "bench_audit.py"), *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )

    assert completed.returncode == 2
    assert "error:" in completed.stderr
    assert completed.stdout == ""
