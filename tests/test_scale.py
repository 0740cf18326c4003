"""What makes a large audit fast must not change what it finds.

Worker processes, the progress bar and the phase timings are checked here on small
trees; how fast they are is the benchmark script's business (benchmarks/bench_audit.py).
"""

from __future__ import annotations

import errno
import glob
import io
import logging
import multiprocessing
import os
import subprocess
import sys
import time

import pytest
from conftest import CASES, REALRUNS, REPO_ROOT, audit_case, output_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from benchtruth_utils import ParameterError, audit, auditlog, outputs, params, spill
from benchtruth_utils.audit import MARKED_CLAIMED_FILE
from benchtruth_utils.outputs import ITEM_SEPARATOR
from benchtruth_utils.truth import TRUTH_FILE


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
    for phase in ("scan bench dirs", "select newest runs", "wait for truth file", "render report"):
        assert phase in text
    assert f"real_runs: {result.truth['real_run_count']}" in text
    assert set(result.timings) >= {"scan bench dirs", "draw coverage heatmap"}


def test_no_spill_file_outlives_an_audit_even_a_failed_one(tmp_path, monkeypatch):
    audit_case(REALRUNS, tmp_path / "ok")
    assert list((tmp_path / "ok").rglob("*.part")) == []

    def broken_write(path, document, stop=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "write_truth_unpublished", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        audit_case(REALRUNS, tmp_path / "failed")
    assert list((tmp_path / "failed").rglob("*.part")) == []


@settings(max_examples=60, deadline=None)
@given(
    dirs=st.lists(st.lists(st.text(min_size=1, max_size=30), max_size=6), min_size=1, max_size=6),
    data=st.data(),
)
def test_spilled_lines_come_back_in_any_order_asked(tmp_path_factory, dirs, data):
    # Each dir's lines spilled, read back in any order, line by line or joined as the
    # truth file joins them.
    prefix = spill.new_spill_prefix(str(tmp_path_factory.mktemp("spill")))
    index = spill.SpillIndex()
    try:
        for lines in dirs:
            if lines:
                index.add(spill.spill_lines(prefix, lines))
        expected = [line.encode("utf-8", "backslashreplace") for lines in dirs for line in lines]
        # Any order, of all lines or some (superseded runs are left out).
        order = data.draw(st.permutations(range(len(expected))))
        order = data.draw(st.sampled_from([order, order[: len(order) // 2], order[1:]]))

        assert list(index.lines(order)) == [expected[position] for position in order]
        if order:
            assert index.lines(order)[-1] == expected[order[-1]]

        # Joined: stretches that lie one after another in a spill file come as one range.
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
    (out / "logs").mkdir()
    orphans = [
        out / f".tmp-runs-{dead_pid}-abcdef012345-{dead_pid}.part",
        out / f".tmp-{dead_pid}-k2j4x8q1.part",  # an output a killed audit was writing
        out / "logs" / f".tmp-{dead_pid}-a8c1f0zz.part",
        # Named by this very process id: a previous process that had it (in a container
        # the first process always has id 1); this audit has written nothing yet.
        out / f".tmp-runs-{os.getpid()}-abcdef012345-{os.getpid()}.part",
    ]
    for orphan in orphans:
        orphan.write_bytes(b"left by a killed audit")
    # Another process writing an output into the same folder (02 pointed here, say).
    other_audit = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    running = out / f".tmp-{other_audit.pid}-w8q2k4z1.part"
    running.write_bytes(b"an output still being written")

    try:
        audit.run_audit(
            bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
            project_root=str(REALRUNS),
            output_dir=str(out),
        )
    finally:
        other_audit.kill()
        other_audit.wait()

    assert not any(orphan.exists() for orphan in orphans) and running.exists()
    names = sorted(
        [orphan.name for orphan in orphans if orphan.parent == out]
        + [f"logs/{orphan.name}" for orphan in orphans if orphan.parent != out]
    )
    assert (
        f"removed 4 temporary files (spill files, half-written outputs) that a killed audit "
        f"left in the output_dir: {', '.join(names)}"
    ) in caplog.text


HOLDS_THE_FOLDER = """
import sys, time
from benchtruth_utils.outputs import output_dir_lock

with output_dir_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_second_audit_of_a_folder_in_use_is_refused_and_touches_nothing(tmp_path):
    # Two hosts or containers sharing a volume: process ids say nothing across them, and
    # the second audit deleted the first's live spill files as a killed audit's leftovers.
    out = tmp_path / "analysis"
    out.mkdir()
    first = subprocess.Popen(
        [sys.executable, "-c", HOLDS_THE_FOLDER, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert first.stdout.readline().strip() == "holding"
        live_spill = out / ".tmp-runs-1-abcdef012345-3.part"  # its id in its own container
        live_spill.write_bytes(b"the first audit's runs")
        before = sorted(out.rglob("*"))

        with pytest.raises(ParameterError, match="no other audit is writing to"):
            audit.run_audit(
                bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
                project_root=str(REALRUNS),
                output_dir=str(out),
            )

        assert sorted(out.rglob("*")) == before and live_spill.exists()
    finally:
        first.kill()
        first.wait()

    # Once the first has ended (killed here), the folder is free and its leftovers go.
    audit.run_audit(
        bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
        project_root=str(REALRUNS),
        output_dir=str(out),
    )
    assert not live_spill.exists()


def _draw_badly(grid):
    raise ValueError("no room for the labels")


def _die_while_drawing(grid):
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
    monkeypatch.setattr(audit, "coverage_heatmap_png", draw)

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
    def broken_write(path, document, stop=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "write_truth_unpublished", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        audit.run_audit(
            bench_list=str(REALRUNS / "runs/orchestrator/20260129_073037/bench_dirs_all.txt"),
            project_root=str(REALRUNS),
            output_dir=str(tmp_path / "out"),
            workers=2,
        )
    assert multiprocessing.active_children() == []
    # The same files as a failed audit in one process leaves: no heatmap.
    assert not (tmp_path / "out" / "coverage_heatmap.png").exists()


ORPHAN_AFTER_KILL = """
import multiprocessing, os, time
from benchtruth_utils import audit

def child(parent_pid):
    audit.die_with_parent(parent_pid)
    # Let go of the test's pipes, so that the test waits for the parent only.
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    time.sleep(60)

process = multiprocessing.get_context("fork").Process(target=child, args=(os.getpid(),))
process.start()
print(process.pid, flush=True)
time.sleep(1)
os.kill(os.getpid(), 9)  # the audit killed, as the OOM killer would
"""


def _gone(pid: int) -> bool:
    # A killed process reparented to init may linger as a zombie until it is reaped.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_a_worker_dies_with_its_killed_audit(tmp_path):
    # It would otherwise live on, holding its deleted spill file open (a reviewer saw it).
    completed = subprocess.run(
        [sys.executable, "-c", ORPHAN_AFTER_KILL],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    worker = int(completed.stdout.split()[0])

    for _ in range(50):
        if _gone(worker):
            break
        time.sleep(0.1)
    assert _gone(worker)


@pytest.mark.parametrize(
    "kernel_says",
    [
        PermissionError(errno.EPERM, "blocked by seccomp"),
        OSError(errno.EXDEV, "cross-device"),
        0,
    ],
)
def test_ranges_are_copied_through_memory_where_the_kernel_will_not(tmp_path, kernel_says):
    source = tmp_path / "source"
    source.write_bytes(b"0123456789" * 1000)

    def copy_file_range(*arguments):
        if isinstance(kernel_says, Exception):
            raise kernel_says
        return kernel_says

    target = tmp_path / "target"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "copy_file_range", copy_file_range, raising=False)
        outputs.atomic_write_chunks(
            str(target), ["<", outputs.FileRange(str(source), 5, 9005), b">"]
        )

    assert target.read_bytes() == b"<" + source.read_bytes()[5:9005] + b">"


def test_a_range_past_the_end_of_its_file_fails_the_write(tmp_path):
    source = tmp_path / "source"
    source.write_bytes(b"short")

    with pytest.raises(OSError, match="ends before byte 50"):
        outputs.atomic_write_chunks(str(tmp_path / "t"), [outputs.FileRange(str(source), 0, 50)])
    assert not (tmp_path / "t").exists()
    assert list(tmp_path.glob(".tmp-*")) == []


def test_a_released_range_is_copied_whole_and_then_freed(tmp_path):
    # The truth file's run lines are freed from their spill file as they are copied: the
    # copy must hold every byte, and the source range then reads as zeros (where Linux
    # and the file system punch holes) or as it was (where they do not).
    source = tmp_path / "spill.part"
    content = bytes(range(256)) * 64
    source.write_bytes(content)
    target = tmp_path / "out"

    outputs.atomic_write_chunks(
        str(target), [b"[", outputs.FileRange(str(source), 1000, 9000, release=True), b"]"]
    )

    assert target.read_bytes() == b"[" + content[1000:9000] + b"]"
    after = source.read_bytes()
    assert len(after) == len(content)
    assert after[:1000] == content[:1000] and after[9000:] == content[9000:]
    assert after[1000:9000] in (content[1000:9000], bytes(8000))


def test_a_released_range_is_copied_when_its_file_cannot_be_opened_for_writing(
    tmp_path, monkeypatch
):
    # Freeing the pages needs the source open for writing; where that is refused (a umask
    # without the owner's write bit) the range is still copied, and only not freed.
    source = tmp_path / "spill.part"
    content = bytes(range(256)) * 8
    source.write_bytes(content)
    real_open = os.open

    def no_writing(path, flags, *args):
        if flags & (os.O_WRONLY | os.O_RDWR) and str(path) == str(source):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_writing)
    target = tmp_path / "out"
    outputs.atomic_write_chunks(
        str(target), [outputs.FileRange(str(source), 100, 1500, release=True)]
    )

    assert target.read_bytes() == content[100:1500]
    assert source.read_bytes() == content


PUBLISHED_TOGETHER = (MARKED_CLAIMED_FILE, TRUTH_FILE, "benchmark_truthfulness.md")


@pytest.mark.parametrize("failing", ["render_report", "_log_narrative"])
def test_an_audit_that_fails_before_its_report_is_ready_publishes_no_truth_file(
    tmp_path, monkeypatch, failing
):
    # The truth file is written beside the log and the report; it replaces the previous
    # one only when both are ready, so a failure leaves the previous evidence whole.
    audit_case(REALRUNS, tmp_path / "a")
    analysis = tmp_path / "a" / "analysis"
    previous = {name: (analysis / name).read_bytes() for name in PUBLISHED_TOGETHER}

    def broken(*arguments, **keywords):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(audit, failing, broken)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        audit_case(REALRUNS, tmp_path / "a")

    assert {name: (analysis / name).read_bytes() for name in PUBLISHED_TOGETHER} == previous
    assert list((tmp_path / "a").rglob("*.part")) == []
    with pytest.raises(RuntimeError, match="broken on purpose"):
        audit_case(REALRUNS, tmp_path / "b")
    assert not (tmp_path / "b" / "analysis" / TRUTH_FILE).exists()
    assert list((tmp_path / "b").rglob("*.part")) == []


def test_an_audit_whose_report_cannot_be_written_publishes_none_of_the_three(tmp_path, monkeypatch):
    # The report is written (unpublished) before any of the three replaces the old one: a
    # full disk there leaves the previous marked table, truth file and report together.
    audit_case(REALRUNS, tmp_path / "a")
    analysis = tmp_path / "a" / "analysis"
    previous = {name: (analysis / name).read_bytes() for name in PUBLISHED_TOGETHER}
    real_write_unpublished = audit.write_unpublished

    def no_room_for_the_report(path, chunks):
        if os.path.basename(path) == "benchmark_truthfulness.md":
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_write_unpublished(path, chunks)

    monkeypatch.setattr(audit, "write_unpublished", no_room_for_the_report)
    with pytest.raises(OSError, match="No space left"):
        audit_case(REALRUNS, tmp_path / "a")

    assert {name: (analysis / name).read_bytes() for name in PUBLISHED_TOGETHER} == previous
    assert list((tmp_path / "a").rglob("*.part")) == []


def test_an_output_that_cannot_be_put_in_place_leaves_no_temporary_files(tmp_path, monkeypatch):
    audit_case(REALRUNS, tmp_path / "a")
    real_publish = audit.publish_file

    def truth_cannot_be_renamed(temporary, path):
        if os.path.basename(path) == TRUTH_FILE:
            outputs.discard_file(temporary)
            raise OSError(errno.EIO, "Input/output error")
        real_publish(temporary, path)

    monkeypatch.setattr(audit, "publish_file", truth_cannot_be_renamed)
    with pytest.raises(OSError, match="Input/output error"):
        audit_case(REALRUNS, tmp_path / "a")

    assert list((tmp_path / "a").rglob("*.part")) == []
