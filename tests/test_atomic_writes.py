"""Outputs are written atomically: an audit killed while it writes leaves the previous
outputs whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REALRUNS, REPO_ROOT

STAMP = REALRUNS / "runs/orchestrator/20260129_073037"

# The child runs the audit and stops for good inside the n-th file write, after the bytes
# went to the temporary file and before the rename; the test then kills it with SIGKILL.
CHILD = """
import os, sys, time
import benchtruth_utils.outputs as outputs

stop_at = int(sys.argv[1])
marker = sys.argv[2]
real_fsync = os.fsync
calls = 0

def fsync_then_hang(fd):
    global calls
    real_fsync(fd)
    calls += 1
    if calls == stop_at:
        open(marker, "w").close()
        time.sleep(600)

outputs.os.fsync = fsync_then_hang

from benchtruth_utils import run_audit
run_audit(
    bench_list=sys.argv[3],
    output_dir=sys.argv[4],
    paper_tables_dir=sys.argv[5],
    project_root=sys.argv[6],
)
"""


def _audit_in_child(stop_at, out_dir, marker, epoch):
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SOURCE_DATE_EPOCH": epoch}
    arguments = [
        str(STAMP / "bench_dirs_all.txt"),
        str(out_dir),
        str(STAMP / "paper_tables"),
        str(REALRUNS),
    ]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(stop_at), str(marker), *arguments],
        env=environment,
    )


def _snapshot(out_dir):
    return {
        path.relative_to(out_dir): path.read_bytes()
        for path in out_dir.rglob("*")
        if path.is_file() and not path.name.endswith(".part")
    }


@pytest.mark.parametrize("stop_at", [1, 2, 3, 4])
def test_an_audit_killed_mid_write_leaves_every_output_whole(tmp_path, stop_at):
    # The second audit has another generation time, so each file tells which run wrote it.
    out_dir = tmp_path / "analysis"
    assert _audit_in_child(0, out_dir, tmp_path / "never", "0").wait(timeout=120) == 0
    old = _snapshot(out_dir)
    complete = tmp_path / "complete"
    assert _audit_in_child(0, complete, tmp_path / "never", "86400").wait(timeout=120) == 0
    new = _snapshot(complete)
    assert old != new

    marker = tmp_path / "hanging"
    child = _audit_in_child(stop_at, out_dir, marker, "86400")
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, "the audit ended before the write it should hang in"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    after = _snapshot(out_dir)
    assert sorted(after) == sorted(old)
    for name, content in after.items():
        assert content in (old[name], new[name]), name
    json.loads((out_dir / "benchmark_truthfulness.json").read_text())
    # SIGKILL leaves the file being written (and those written but not yet put in place),
    # and the run lines spilled while scanning (see benchtruth_utils.spill); none has the
    # name of an output.
    leftovers = [
        path.name for path in out_dir.rglob("*.part") if not path.name.startswith(".tmp-runs-")
    ]
    assert leftovers and all(name.startswith(".tmp-") for name in leftovers)
