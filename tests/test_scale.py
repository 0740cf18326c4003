"""What makes a large audit fast must not change what it finds.

Worker processes, the progress bar and the phase timings are checked here on small
trees; how fast they are is the benchmark script's business (benchmarks/bench_audit.py).
"""

from __future__ import annotations

import glob
import io
import logging
import multiprocessing
import os
import subprocess
import sys

import pytest
from conftest import CASES, REALRUNS, REPO_ROOT, audit_case, output_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from benchtruth_utils import ParameterError, audit, auditlog, outputs, params, spill
from benchtruth_utils.outputs import ITEM_SEPARATOR


@pytest.fixture
def workers_for_any_tree(monkeypatch):
    # The fixtures hold a few dirs; below the threshold the scan would not fork at all.
    monkeypatch.setattr(audit, "MIN_DIRS_FOR_WORKERS", 1)


CASES_WITH_FINDINGS = [REALRUNS, CASES / "same_dir_listed_twice", CASES / "null_key_field"]


@pytest.mark.parametrize("case", CASES_WITH_FINDINGS)
def test_worker_processes_give_the_same_outputs_as_one_process(
    case, tmp_path, monkeypatch, workers_for_any_tree
):
    calls = []
    real_run_audit = audit.run_audit

    def run_audit_with(workers):
        def run(**arguments):
            calls.append(workers)
            return real_run_audit(**arguments, workers=workers)

        return run

    monkeypatch.setattr("conftest.run_audit", run_audit_with(1))
    one, _ = audit_case(case, tmp_path / "one")
    monkeypatch.setattr("conftest.run_audit", run_audit_with(2))
    two, _ = audit_case(case, tmp_path / "two")

    assert calls == [1, 2]
    assert one.truth == two.truth
    assert output_bytes(tmp_path / "one") == output_bytes(tmp_path / "two")
    timings = (tmp_path / "two" / "analysis" / "logs").glob("*.timings.log")
    used = min(2, two.truth["bench_dirs_count"])
    assert f"worker_processes: {used}" in next(timings).read_text()


def test_the_progress_bar_draws_the_same_text_on_every_run(tmp_path, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(audit, "progress_stream", lambda: stream)
    arguments = {
        "host_tag": "4090",
        "bench_list": str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
        "project_root": str(REALRUNS),
        "progress": True,
    }

    audit.run_audit(**arguments, output_dir=str(tmp_path / "a"))
    first = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    audit.run_audit(**arguments, output_dir=str(tmp_path / "b"))

    assert first == stream.getvalue()
    assert "scanning bench dirs: 100%" in first and "13/13 dirs" in first
    assert "it/s" not in first and "<" not in first


def test_no_progress_bar_unless_asked_or_on_a_terminal(tmp_path, monkeypatch, capsys):
    audit_case(REALRUNS, tmp_path)

    captured = capsys.readouterr()
    assert "scanning bench dirs" not in captured.err + captured.out


def test_the_bar_goes_where_the_notebook_log_goes(monkeypatch):
    shown = io.StringIO()
    monkeypatch.setattr("sys.stdout", shown)
    package_logger = logging.getLogger(auditlog.PACKAGE_LOGGER)
    saved = (package_logger.handlers[:], package_logger.level, package_logger.propagate)
    try:
        auditlog.configure_notebook_logging()
        assert auditlog.progress_stream() is shown
    finally:
        package_logger.handlers, package_logger.level, package_logger.propagate = saved


def test_the_timings_log_names_every_phase_and_the_scale(tmp_path):
    result, _ = audit_case(REALRUNS, tmp_path)

    text = (tmp_path / "analysis" / "logs" / "benchmark_truthfulness_4090.timings.log").read_text()
    for phase in ("scan bench dirs", "select newest runs", "validate and write truth file"):
        assert phase in text
    assert f"real_runs: {result.truth['real_run_count']}" in text
    assert set(result.timings) >= {"scan bench dirs", "draw coverage heatmap"}


def test_no_spill_file_outlives_an_audit_even_a_failed_one(tmp_path, monkeypatch):
    audit_case(REALRUNS, tmp_path / "ok")
    assert list((tmp_path / "ok").rglob("*.part")) == []

    def broken_write(path, document):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "write_truth", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        audit_case(REALRUNS, tmp_path / "failed")
    assert list((tmp_path / "failed").rglob("*.part")) == []


@settings(max_examples=60, deadline=None)
@given(
    dirs=st.lists(st.lists(st.text(min_size=1, max_size=30), max_size=6), min_size=1, max_size=6),
    data=st.data(),
)
def test_spilled_lines_come_back_in_any_order_asked(tmp_path_factory, dirs, data):
    prefix = spill.new_spill_prefix(str(tmp_path_factory.mktemp("spill")))
    index = spill.SpillIndex()
    try:
        for lines in dirs:
            if lines:
                index.add(spill.spill_lines(prefix, lines))
        expected = [line.encode("utf-8", "backslashreplace") for lines in dirs for line in lines]
        order = data.draw(st.permutations(range(len(expected))))

        # A tiny block makes most reads cross a block's edge.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(spill, "READ_BLOCK_BYTES", 16)
            patch.setattr(spill, "BACKWARD_BYTES", 4)
            assert list(index.lines(order)) == [expected[position] for position in order]
        assert list(index.lines(order)) == [expected[position] for position in order]
    finally:
        spill.remove_spill_files(prefix)
    assert not list(glob.glob(prefix + "*"))


@pytest.mark.parametrize("workers", [0, -1, 2.5, "two", True, float("nan")])
def test_a_worker_count_that_is_not_a_whole_positive_number_is_refused(tmp_path, workers):
    with pytest.raises(ParameterError, match="workers"):
        audit.run_audit(
            bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
            project_root=str(REALRUNS),
            output_dir=str(tmp_path / "out"),
            workers=workers,
        )
    assert not (tmp_path / "out").exists()


def test_a_huge_worker_count_is_capped_not_forked():
    # 10**20 processes would fork until the machine stops: it did, once.
    assert params.normalise_workers(10**20) == params.MAX_WORKERS_A_CORE * params.available_cores()
    assert params.normalise_workers("3") == min(3, 4 * params.available_cores())
    assert params.normalise_workers(None) == params.available_cores()
    assert audit.workers_for(8, 10) == 1
    assert audit.workers_for(8, 100) == 8
    assert audit.workers_for(500, 100) == 100


WORKER_DIES = """
import os, sys
from benchtruth_utils import audit

audit.MIN_DIRS_FOR_WORKERS = 1
real_scan = audit.scan_one_dir

def scan_or_die(task):
    # The worker that gets the fifth dir dies the way the OOM killer ends a process.
    if task[0].line == 5:
        os._exit(9)
    return real_scan(task)

audit.scan_one_dir = scan_or_die
audit.run_audit(bench_list=sys.argv[1], project_root=sys.argv[2], output_dir=sys.argv[3], workers=2)
"""


def test_a_worker_that_dies_fails_the_audit_instead_of_hanging_it(tmp_path):
    out = tmp_path / "out"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER_DIES,
            str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
            str(REALRUNS),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )

    assert completed.returncode != 0
    assert "BrokenProcessPool" in completed.stderr
    assert list(out.rglob("*.part")) == []


def test_spill_files_of_a_killed_audit_go_with_the_next_audit(tmp_path, caplog):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(finished.stdout)
    out = tmp_path / "analysis"
    out.mkdir()
    orphan = out / f".tmp-runs-{dead_pid}-abcdef012345-{dead_pid}.part"
    orphan.write_bytes(b"left by a killed audit")
    running = out / f".tmp-runs-{os.getpid()}-abcdef012345-{os.getpid()}.part"
    running.write_bytes(b"an audit still running")

    audit.run_audit(
        bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
        project_root=str(REALRUNS),
        output_dir=str(out),
    )

    assert not orphan.exists() and running.exists()
    assert f"removed 1 spill files that a killed audit left in the output_dir: {orphan.name}" in (
        caplog.text
    )


@settings(max_examples=60, deadline=None)
@given(
    dirs=st.lists(st.lists(st.text(min_size=1, max_size=30), max_size=6), min_size=1, max_size=6),
    data=st.data(),
)
def test_spilled_lines_join_as_the_truth_file_joins_them(tmp_path_factory, dirs, data):
    # Each dir's lines spilled in an order of their own, read back in any order: stretches
    # that lie one after another in the spill file must come back as the same text.
    prefix = spill.new_spill_prefix(str(tmp_path_factory.mktemp("spill")))
    index = spill.SpillIndex()
    try:
        for lines in dirs:
            if lines:
                spill_order = data.draw(st.permutations(range(len(lines))))
                index.add(spill.spill_lines(prefix, lines, spill_order))
        expected = [line.encode("utf-8", "backslashreplace") for lines in dirs for line in lines]
        order = data.draw(st.permutations(range(len(expected))) | st.just(range(len(expected))))
        order = data.draw(st.lists(st.sampled_from(order), unique=True)) if order else order

        pieces = list(index.lines(list(order)).joined())
        joined = b"".join(piece.read() for piece in pieces)
        assert joined == ITEM_SEPARATOR.encode().join(expected[position] for position in order)

        # And as the file writer copies them, by the kernel or through memory.
        for kernel_copy in (True, False):
            target = str(tmp_path_factory.mktemp("out") / "joined")
            with pytest.MonkeyPatch.context() as patch:
                if not kernel_copy:
                    patch.delattr(os, "copy_file_range", raising=False)
                    patch.setattr(outputs, "COPY_BLOCK_BYTES", 7)
                outputs.atomic_write_chunks(target, ["[", *pieces, b"]"])
            with open(target, "rb") as handle:
                assert handle.read() == b"[" + joined + b"]"
    finally:
        spill.remove_spill_files(prefix)


def _draw_badly(grid, path):
    raise ValueError("no room for the labels")


def _die_while_drawing(grid, path):
    os._exit(9)


@pytest.mark.parametrize(
    ("draw", "message"),
    [
        (_draw_badly, "drawing the coverage heatmap failed: ValueError: no room"),
        (_die_while_drawing, "heatmap process ended without drawing"),
    ],
)
def test_a_heatmap_drawn_beside_that_fails_fails_the_audit(
    draw, message, tmp_path, monkeypatch, workers_for_any_tree
):
    # The drawer is forked before the scan, so it draws with the patched function.
    monkeypatch.setattr(audit, "write_coverage_heatmap", draw)

    with pytest.raises(RuntimeError, match=message):
        audit.run_audit(
            bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
            project_root=str(REALRUNS),
            output_dir=str(tmp_path / "out"),
            workers=2,
        )
    assert not (tmp_path / "out" / "coverage_heatmap.png").exists()
    assert list((tmp_path / "out").rglob("*.part")) == []


def test_an_audit_that_fails_before_drawing_leaves_no_drawer_behind(
    tmp_path, monkeypatch, workers_for_any_tree
):
    def broken_write(path, document):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "write_truth", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        audit.run_audit(
            bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
            project_root=str(REALRUNS),
            output_dir=str(tmp_path / "out"),
            workers=2,
        )
    assert multiprocessing.active_children() == []
