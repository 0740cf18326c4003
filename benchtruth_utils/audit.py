"""The audit from end to end: read the inputs, decide what is real, write the evidence.

:func:`run_audit` is what ``notebooks/01_audit`` calls and :func:`build_tables`
what ``notebooks/02_tables`` calls. Reading happens first and writing last, so a
refusal (a bad parameter, a missing bench list) leaves the output folder untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import gc
import glob
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import stat
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pandas as pd
from tqdm import tqdm

from . import __version__
from .artifacts import (
    CONFIG_FILE,
    METRICS_FILE,
    STATUS_RUN_FILE,
    Parsed,
    read_config,
    read_metrics,
    read_run_log,
    read_status_run,
)
from .auditlog import PhaseTimes, capture_audit_log, progress_stream
from .benchlist import BenchEntry, BenchList, find_unlisted_dirs, read_bench_list
from .claimed import (
    DEFAULT_ABS_TOL,
    DEFAULT_REL_TOL,
    ClaimedTable,
    MarkedTable,
    mark_claimed_rows,
    read_claimed_table,
)
from .coverage import (
    GRID_LEGEND,
    Plan,
    compare_plan,
    coverage_grid,
    find_inert_factors,
    plan_from_config,
)
from .errors import ArtifactsChangedError
from .figures import (
    COVERAGE_HEATMAP_FILE,
    METRICS_PLOT_FILE,
    coverage_heatmap_png,
    plot_metrics_by_configuration,
    save_png,
    warm_up_heatmap_drawing,
    write_coverage_heatmap,
)
from .findings import Finding, Reason, Scope
from .latex import LATEX_FILE
from .outputs import (
    LOCK_FILE,
    EncodedItems,
    atomic_write_bytes,
    atomic_write_text,
    discard_file,
    frame_to_csv_text,
    output_dir_lock,
    publish_file,
    write_unpublished,
)
from .params import (
    DEFAULT_HOST_TAGS,
    check_output_dir,
    default_paper_tables_dir,
    normalise_flag_parameter,
    normalise_host_tag,
    normalise_path_parameter,
    normalise_tolerance,
    normalise_workers,
)
from .paths import display_path, lexical_relative, short_repr
from .report import render_report
from .runs import (
    KEY_FIELDS,
    RECORD_FIELDS,
    KeyRange,
    RunOrder,
    RunRecord,
    Superseded,
    as_run_record,
    key_range,
    newest_indices,
    record_key,
    record_key_and_seed,
    records_from_dir,
)
from .spill import (
    SpilledDir,
    SpillIndex,
    new_spill_prefix,
    remove_orphaned_temporary_files,
    remove_spill_files,
    spill_lines,
)
from .tables import (
    EFFICIENCY_FILE,
    MAIN_RESULTS_FILE,
    TABLES_MANIFEST_FILE,
    summarize_runs,
    write_tables,
    written_by_benchtruth,
)
from .truth import (
    METRIC_EXTRACTION_MAPPING,
    SCHEMA_VERSION,
    TRUTH_FILE,
    encode_run_records,
    generation_time,
    load_truth,
    previous_host_tag,
    write_truth_unpublished,
)
from .verify import verify_truth

logger = logging.getLogger(__name__)

REPORT_FILE = "benchmark_truthfulness.md"


def audit_log_file_name(host_tag: str) -> str:
    """The audit log's name in ``logs/``: what was counted, then what was left out and why."""
    return f"benchmark_truthfulness_{host_tag}.log"


def timings_file_name(host_tag: str) -> str:
    """The file, beside the audit log, that says how long each phase took."""
    return f"benchmark_truthfulness_{host_tag}.timings.log"


MARKED_CLAIMED_FILE = "claimed_main_results_marked.csv"
CLAIMED_TABLE_FILE = "main_results.csv"


@dataclasses.dataclass
class AuditResult:
    """What one audit found and where it wrote it (paths as the caller gave them).

    ``truth`` is the truth document; ``document`` is the same without its real runs,
    which ``kept_runs`` holds as records.
    """

    document: dict[str, Any]
    truth_path: str
    report_path: str
    log_path: str
    marked_claimed_path: str | None
    heatmap_path: str
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    kept_runs: list[RunRecord] = dataclasses.field(default_factory=list, repr=False)

    @functools.cached_property
    def truth(self) -> dict[str, Any]:
        """The truth document as its file holds it.

        ``document`` leaves out the real runs; they become dicts on first use only,
        because a million of them take more memory than the audit itself.
        """
        return {**self.document, "real_runs": [run.to_dict() for run in self.kept_runs]}

    @property
    def real_runs(self) -> pd.DataFrame:
        return pd.DataFrame(self.truth["real_runs"])

    @property
    def excluded(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.truth["excluded"], columns=["code", "scope", "path", "item", "detail"]
        )

    @property
    def phantom_rows(self) -> pd.DataFrame:
        rows = [
            {"row": row["row"], **row["claimed"], "reason": row["reason"]}
            for row in self.truth["phantom_rows"]
        ]
        return pd.DataFrame(rows)

    @property
    def drifted_cells(self) -> pd.DataFrame:
        rows = [
            {"row": row["row"], **(row["key"] or {}), **cell}
            for row in self.truth["drifted_rows"]
            for cell in row["cells"]
        ]
        return pd.DataFrame(rows)


PROVENANCE_FIELDS = ("git_head", "git_sha", "data_stamp")


def config_provenance(config: Parsed) -> dict[str, str]:
    """The code and data version a config names: ``git_head``, ``git_sha``, ``data_stamp``."""
    if not config.ok:
        return {}
    return {
        field: short_repr(config.value[field]).strip("'\"")
        for field in PROVENANCE_FIELDS
        if isinstance(config.value.get(field), (str, int))
        and not isinstance(config.value.get(field), bool)
    }


def check_bench_dir(entry: BenchEntry) -> Finding | None:
    """Why a listed bench dir cannot be opened as a folder, or None when it can."""
    if not entry.inside_root:
        return Finding(
            Reason.BENCH_DIR_OUTSIDE_ROOT,
            Scope.BENCH_DIR,
            entry.path,
            "the listed path lies outside the project root; set project_root to a folder "
            "that holds it",
        )

    try:
        status = os.stat(entry.location)
    except FileNotFoundError:
        detail = (
            "a symlink whose target does not exist"
            if os.path.islink(entry.location)
            else "no such directory"
        )
        return Finding(Reason.BENCH_DIR_MISSING, Scope.BENCH_DIR, entry.path, detail)
    except OSError as err:
        detail = (
            "symlink loop" if err.errno == errno.ELOOP else f"cannot be opened ({err.strerror})"
        )
        return Finding(Reason.BENCH_DIR_UNREADABLE, Scope.BENCH_DIR, entry.path, detail)

    if not stat.S_ISDIR(status.st_mode):
        return Finding(
            Reason.BENCH_DIR_NOT_A_DIRECTORY,
            Scope.BENCH_DIR,
            entry.path,
            "listed as a bench dir but is a file",
        )
    if not os.access(entry.location, os.R_OK | os.X_OK):
        return Finding(
            Reason.BENCH_DIR_UNREADABLE, Scope.BENCH_DIR, entry.path, "permission denied"
        )
    return None


@dataclasses.dataclass
class RunLogIndex:
    """Wall times from the run logs, by the bench dir their ``Output:`` line names."""

    wall_seconds: dict[str, float]
    log_of: dict[str, str]
    warnings: list[Finding]
    sha256_of: dict[str, str] = dataclasses.field(default_factory=dict)


def index_run_logs(logs_dir: str, project_root: str) -> RunLogIndex:
    """Read every ``*.log`` in ``logs_dir`` and tie it to the bench dir it produced."""
    claims: dict[str, list[tuple[str, float | None]]] = {}
    warnings: list[Finding] = []
    sha256_of: dict[str, str] = {}

    for path in sorted(glob.glob(os.path.join(glob.escape(logs_dir), "*.log"))):
        shown = display_path(path, project_root)
        parsed = read_run_log(path)
        if not parsed.ok:
            warnings.append(Finding(parsed.reason, Scope.RUN_LOG, shown, parsed.detail))
            continue
        run_log = parsed.value
        sha256_of[shown] = parsed.sha256
        if run_log.output_dir is None:
            continue
        produced = lexical_relative(os.path.join(project_root, run_log.output_dir), project_root)
        if produced is not None:
            claims.setdefault(produced, []).append((shown, run_log.wall_seconds))

    wall_seconds: dict[str, float] = {}
    log_of: dict[str, str] = {}
    for run_dir, logs in claims.items():
        if len(logs) > 1:
            names = ", ".join(shown for shown, _ in logs)
            warnings.append(
                Finding(
                    Reason.RUN_LOG_AMBIGUOUS,
                    Scope.RUN_LOG,
                    run_dir,
                    f"several run logs name this dir ({names}); no timing estimated from them",
                )
            )
            continue
        shown, wall = logs[0]
        log_of[run_dir] = shown
        if wall is not None:
            wall_seconds[run_dir] = wall

    return RunLogIndex(wall_seconds, log_of, warnings, sha256_of)


@dataclasses.dataclass
class DirScan:
    """What one bench dir contributed: made in a worker process, so plain data only."""

    summary: dict[str, Any]
    records: list[RunRecord] = dataclasses.field(default_factory=list)
    # Where the records' lines of the truth file (checked against the schema) went.
    spilled: SpilledDir | None = None
    excluded: list[Finding] = dataclasses.field(default_factory=list)
    warnings: list[Finding] = dataclasses.field(default_factory=list)
    plan: Plan | None = None
    key_range: KeyRange | None = None
    coverage: dict[str, Any] | None = None
    missing_runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    unplanned_runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    inert_factors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    inert_seeds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    inert_summary: str | None = None


@dataclasses.dataclass
class Scan:
    """Everything read from the bench dirs, before the claimed table is looked at."""

    records: list[RunRecord]
    excluded: list[Finding]
    warnings: list[Finding]
    bench_dirs: list[dict[str, Any]]
    plans: dict[str, Plan] = dataclasses.field(default_factory=dict)
    coverage: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    missing_runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    unplanned_runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    inert_factors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    inert_seeds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    inert_summary: dict[str, str] = dataclasses.field(default_factory=dict)
    # Each record's line of the truth file, in the order of ``records``.
    lines: SpillIndex = dataclasses.field(default_factory=SpillIndex)
    order: RunOrder = dataclasses.field(default_factory=RunOrder)

    def add(self, scanned: DirScan) -> None:
        self.bench_dirs.append(scanned.summary)
        self.records.extend(scanned.records)
        self.order.add(scanned.key_range)
        if scanned.spilled is not None:
            self.lines.add(scanned.spilled)
        self.excluded.extend(scanned.excluded)
        self.warnings.extend(scanned.warnings)
        if scanned.plan is not None:
            self.plans[scanned.summary["path"]] = scanned.plan
        if scanned.coverage is not None:
            self.coverage.append(scanned.coverage)
        self.missing_runs.extend(scanned.missing_runs)
        self.unplanned_runs.extend(scanned.unplanned_runs)
        self.inert_factors.extend(scanned.inert_factors)
        self.inert_seeds.extend(scanned.inert_seeds)
        if scanned.inert_summary:
            self.inert_summary[scanned.summary["path"]] = scanned.inert_summary


# What a worker needs of one listed dir: the entry, its run log (name, sha256, wall time),
# and the prefix of the spill files its runs' lines go to.
DirTask = tuple[BenchEntry, str | None, str | None, float | None, str]


def scan_one_dir(task: DirTask) -> DirScan:
    """Read one bench dir's artifacts and decide which of its results are real runs."""
    entry, run_log, run_log_sha256, log_wall_seconds, spill_prefix = task
    summary: dict[str, Any] = {
        "path": entry.path,
        "bench_list_line": entry.line,
        "counted": False,
        "code": None,
        "results": 0,
        "real_runs": 0,
        "excluded_results": 0,
        "run_log": run_log,
        "artifacts": {},
        "provenance": {},
    }
    if run_log is not None:
        summary["artifacts"][run_log] = run_log_sha256
    scanned = DirScan(summary)

    unusable = check_bench_dir(entry)
    if unusable is not None:
        scanned.excluded.append(unusable)
        summary["code"] = unusable.code.value
        return scanned

    config = read_config(entry.location)
    metrics = read_metrics(entry.location)
    status_run = read_status_run(entry.location)
    verdict = records_from_dir(
        entry.path,
        metrics=metrics,
        status_run=status_run,
        config=config,
        log_wall_seconds=log_wall_seconds,
    )
    # Every file whose content decided something, so that verify can re-hash it.
    for name, parsed in (
        (METRICS_FILE, metrics),
        (STATUS_RUN_FILE, status_run),
        (CONFIG_FILE, config),
    ):
        if parsed.sha256 is not None:
            summary["artifacts"][f"{entry.path}/{name}"] = parsed.sha256
    scanned.plan = plan_from_config(config)
    summary["provenance"] = config_provenance(config)
    # In the truth file's order (by key and seed, see newest_indices), so that the dir's
    # kept runs lie in its spill file as one stretch to copy, and so that where the dirs
    # meet tells whether the runs of all of them are in that order (runs.RunOrder).
    scanned.records = sorted(verdict.records, key=record_key_and_seed)
    scanned.key_range = key_range(scanned.records)
    if scanned.records:
        lines = encode_run_records(scanned.records)
        scanned.spilled = spill_lines(spill_prefix, lines)
    scanned.excluded = verdict.excluded
    scanned.warnings = verdict.warnings

    dir_exclusions = [f for f in verdict.excluded if f.scope is Scope.BENCH_DIR]
    summary["counted"] = not dir_exclusions
    summary["code"] = dir_exclusions[0].code.value if dir_exclusions else None
    summary["results"] = verdict.results_count
    summary["real_runs"] = len(verdict.records)
    summary["excluded_results"] = len(verdict.excluded) - len(dir_exclusions)

    # Coverage only means something for a dir whose results were read: an excluded
    # dir's planned runs show as excluded in the grid, not as missing.
    if summary["counted"]:
        scanned.coverage, scanned.missing_runs, scanned.unplanned_runs = compare_plan(
            entry.path, scanned.plan, verdict.records, verdict.exp_name, verdict.use_edgar
        )
    # Inert factors compare runs within one dir, so each dir is settled here.
    factors, seeds, summaries = find_inert_factors(verdict.records)
    scanned.inert_factors, scanned.inert_seeds = factors, seeds
    scanned.inert_summary = summaries.get(entry.path)
    return scanned


@contextlib.contextmanager
def spill_files(prefix: str) -> Iterator[None]:
    """The block may leave spill files named by ``prefix``; they go when it ends."""
    try:
        yield
    finally:
        remove_spill_files(prefix)


@contextlib.contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Python's cycle collector off for the block, on again after (if it was on).

    The collector walks every live object each time enough new ones pile up; with a
    million run records alive it did so again and again, which doubled the time of
    scanning 100k runs. Records hold no reference cycles: reference counting frees them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            # What the block made and left alive joins the oldest generation at once.
            # Left in the youngest, the first collection after the block walked all of it,
            # a million records and more: 0.4 s at the end of auditing 1M runs. (Skipped
            # when the caller has frozen objects of its own, which unfreezing would free.)
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


# Below this many dirs, starting worker processes costs more than it saves.
MIN_DIRS_FOR_WORKERS = 64


def workers_for(requested: int, dirs: int) -> int:
    """The processes a scan of ``dirs`` bench dirs really uses when ``requested`` are allowed."""
    return 1 if dirs < MIN_DIRS_FOR_WORKERS else max(1, min(requested, dirs))


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """End this process when the audit that started it dies, where the system allows.

    A worker or drawer whose audit was killed (SIGKILL, the OOM killer) would otherwise live
    on, blocked on its queue and holding its deleted spill file open. Linux sends it
    SIGKILL when its parent goes; elsewhere it stays until its queue breaks.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        # The parent died before the request was made.
        os._exit(1)


def _start_worker(parent_pid: int) -> None:
    die_with_parent(parent_pid)
    # A worker keeps nothing between dirs, so its collector must run: paused, as the
    # parent's is, each dir's YAML loader cycles piled up to gigabytes. What it inherited
    # from the parent is never garbage here, so the collector leaves it alone (frozen).
    gc.freeze()
    gc.enable()


def _worker_context() -> multiprocessing.context.BaseContext:
    # fork shares the parent's imports at no cost; where there is none, spawn works too.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _scan_in_workers(tasks: list[DirTask], workers: int) -> Iterator[DirScan]:
    """``scan_one_dir`` over the tasks, in their order, in ``workers`` processes."""
    workers = workers_for(workers, len(tasks))
    if workers == 1:
        for task in tasks:
            yield scan_one_dir(task)
            # Reading a dir leaves reference cycles (the YAML loader's); with the full
            # collector paused, only the young objects are looked at, which is cheap.
            gc.collect(0)
        return

    # Chunks big enough that a worker's strings travel once a chunk, small enough that
    # both workers stay busy to the end.
    chunksize = max(1, min(64, len(tasks) // (workers * 8)))
    # Not multiprocessing.Pool: when a worker dies (the OOM killer, a signal) its tasks
    # never come back and Pool waits forever; the executor raises BrokenProcessPool.
    with ProcessPoolExecutor(
        workers,
        mp_context=_worker_context(),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    ) as pool:
        for scanned in pool.map(_scan_one_dir_for_parent, tasks, chunksize=chunksize):
            scanned.records = list(map(as_run_record, scanned.records))
            yield scanned


def _scan_one_dir_for_parent(task: DirTask) -> DirScan:
    """:func:`scan_one_dir` in a worker, its records sent as plain tuples: unpickled as
    named tuples, each cost the parent a Python call, and the parent's time is taken from
    the workers' two cores."""
    scanned = scan_one_dir(task)
    scanned.records = list(map(tuple, scanned.records))
    return scanned


def scan_bench_dirs(
    entries: Sequence[BenchEntry],
    run_logs: RunLogIndex,
    spill_prefix: str,
    workers: int = 1,
    progress: bool = False,
) -> Scan:
    """Read each bench dir's artifacts and turn them into real runs and findings.

    With ``workers`` above one the dirs are read in that many processes; the result
    is the same, in the same order, as reading them one after another. The runs' lines
    of the truth file wait in spill files named by ``spill_prefix``; the caller removes
    them (:func:`spill.remove_spill_files`).
    """
    tasks: list[DirTask] = []
    for entry in entries:
        run_log = run_logs.log_of.get(entry.path)
        log_sha256 = run_logs.sha256_of[run_log] if run_log is not None else None
        wall_seconds = run_logs.wall_seconds.get(entry.path)
        tasks.append((entry, run_log, log_sha256, wall_seconds, spill_prefix))

    scan = Scan(records=[], excluded=[], warnings=[], bench_dirs=[])
    bar = None
    for scanned in _scan_in_workers(tasks, workers):
        # Made once the workers exist: tqdm may start a thread, and fork should not see one.
        bar = bar or progress_bar(len(tasks), "scanning bench dirs", enabled=progress)
        scan.add(scanned)
        bar.update()
    if bar is not None:
        bar.close()
    return scan


class HeatmapDrawer:
    """A process that draws the coverage heatmap while the main process writes the truth
    file: on a large benchmark both take seconds, and each uses one core.

    Started before the scan, while the audit holds little: forked later, it would have
    counted the parent's million records in its own memory. It waits for one grid and
    sends back the PNG, which the main process writes, so that a failed audit leaves the
    same files whether or not a drawer was used.
    """

    def __init__(self) -> None:
        self._connection, child_end = multiprocessing.Pipe()
        self._process = _worker_context().Process(
            target=_draw_when_asked,
            args=(child_end, os.getpid()),
            name="benchtruth-heatmap",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._asked = False

    def draw(self, grid: Mapping[str, Any]) -> None:
        """Start drawing ``grid``; :meth:`wait` for the PNG."""
        self._connection.send(grid)
        self._asked = True

    def wait(self) -> bytes:
        """Wait for the heatmap's PNG; raise what drawing raised."""
        try:
            failure, png = self._connection.recv()
        except EOFError:
            raise RuntimeError(
                f"the coverage heatmap process ended without drawing (exit code "
                f"{self._process.exitcode})"
            ) from None
        if failure is not None:
            raise RuntimeError(f"drawing the coverage heatmap failed: {failure}")
        return png

    def close(self) -> None:
        if not self._asked:
            with contextlib.suppress(OSError):
                self._connection.send(None)
        self._connection.close()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _draw_when_asked(connection: multiprocessing.connection.Connection, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    # The grid comes after the scan; drawing a small one meanwhile makes the real one
    # faster, and the audit waits for that one.
    with contextlib.suppress(Exception):
        warm_up_heatmap_drawing(GRID_LEGEND)
    try:
        grid = connection.recv()
    except EOFError:
        return
    if grid is None:
        return
    try:
        outcome = (None, coverage_heatmap_png(grid))
    except Exception as err:  # reported to the audit, which raises it
        outcome = (f"{type(err).__name__}: {err}", None)
    # An audit that failed meanwhile no longer listens.
    with contextlib.suppress(OSError):
        connection.send(outcome)


@contextlib.contextmanager
def heatmap_drawer(in_background: bool) -> Iterator[HeatmapDrawer | None]:
    """A :class:`HeatmapDrawer` for the block when ``in_background``, else None."""
    if not in_background:
        yield None
        return
    drawer = HeatmapDrawer()
    try:
        yield drawer
    finally:
        drawer.close()


@contextlib.contextmanager
def heatmap_drawn_beside(
    drawer: HeatmapDrawer | None, grid: Mapping[str, Any], path: str, times: PhaseTimes
) -> Iterator[None]:
    """The coverage heatmap of ``grid`` is written to ``path`` when the block ends.

    With a ``drawer`` it is drawn in that process while the block runs: on a large
    benchmark the block writes the truth file, on a small one drawing is most of the
    audit, and both are single-threaded. An error in drawing is raised here.
    """
    if drawer is None:
        yield
        with times.phase("draw coverage heatmap"):
            write_coverage_heatmap(grid, path)
        return

    drawer.draw(grid)
    yield
    with times.phase("wait for coverage heatmap (drawn beside the writes)"):
        png = drawer.wait()
    atomic_write_bytes(path, png)


def progress_bar(total: int, description: str, enabled: bool) -> tqdm:
    """A tqdm bar that redraws at every tenth of ``total``, never on a timer.

    Redraws tied to progress, not to the clock, write the same text on every run, so an
    executed notebook that shows the bar stays byte-identical across reruns.
    """
    return tqdm(
        total=total,
        desc=description,
        disable=not enabled,
        file=progress_stream(),
        mininterval=0,
        maxinterval=float("inf"),
        miniters=max(1, -(-total // 10)),
        bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} dirs",
        ascii=True,
    )


def _mark_claimed(
    claimed_path: str,
    project_root: str,
    kept: list[RunRecord],
    rel_tol: float,
    abs_tol: float,
) -> tuple[dict[str, Any], MarkedTable | None, list[Finding]]:
    # In the runner's layout 02 rebuilds main_results.csv where the claimed table was; a
    # later audit (the other host, a rerun) must audit the claimed table it replaced, not
    # benchtruth's own output.
    notes: list[Finding] = []
    ours, kept_claimed = written_by_benchtruth(claimed_path)
    kept_exists = kept_claimed is not None and os.path.isfile(kept_claimed)
    if ours:
        detail = (
            "written by benchtruth 02_tables; auditing the claimed table it replaced, "
            f"kept as {os.path.basename(kept_claimed)}"
            if kept_exists
            else "written by benchtruth 02_tables, and no kept claimed table is recorded; "
            "treated as no claimed table"
        )
        shown_ours = display_path(claimed_path, project_root)
        notes.append(
            Finding(
                Reason.CLAIMED_TABLE_WRITTEN_BY_BENCHTRUTH, Scope.CLAIMED_TABLE, shown_ours, detail
            )
        )

    if ours and not kept_exists:
        # Auditing benchtruth's own table would pass it: there is no claimed table.
        claimed = ClaimedTable(display_path(claimed_path, project_root), present=False)
    else:
        claimed_path = kept_claimed if ours else claimed_path
        claimed = read_claimed_table(claimed_path, display_path(claimed_path, project_root))
    shown = claimed.path
    claimed.findings[:0] = notes
    section: dict[str, Any] = {
        "present": claimed.present,
        "path": shown,
        "sha256": claimed.sha256,
        "rows": 0,
        "status_counts": {},
    }
    if claimed.rows is None:
        return section, None, claimed.findings

    summary = summarize_runs(pd.DataFrame.from_records(kept, columns=RECORD_FIELDS))
    marked = mark_claimed_rows(claimed.rows, summary, rel_tol=rel_tol, abs_tol=abs_tol)
    section["rows"] = len(claimed.rows)
    section["status_counts"] = marked.status_counts
    duplicates = [dataclasses.replace(finding, path=shown) for finding in marked.findings]
    return section, marked, [*claimed.findings, *duplicates]


def build_truth_document(
    *,
    host_tag: str,
    project_root: str,
    bench_list: BenchList,
    scan: Scan,
    kept: list[RunRecord],
    kept_lines: EncodedItems,
    superseded: list,
    excluded: list[dict[str, Any]],
    grid: dict[str, Any],
    run_logs: RunLogIndex,
    claimed_section: Mapping[str, Any],
    marked: MarkedTable | None,
    claimed_findings: list[Finding],
    rel_tol: float,
    abs_tol: float,
) -> dict[str, Any]:
    """Assemble the truth document from the results of every stage.

    ``excluded`` is ``scan.excluded`` as dicts, and ``grid`` the :func:`coverage_grid` of
    the scan: both made before, so that the heatmap is drawn while this runs.
    """
    warnings = [
        finding.to_dict()
        for finding in (*bench_list.findings, *run_logs.warnings, *scan.warnings, *claimed_findings)
    ]
    dirs_excluded = sum(1 for summary in scan.bench_dirs if not summary["counted"])
    # In the order find_inert_factors gives for all dirs at once: by dir.
    inert_factors = sorted(scan.inert_factors, key=lambda finding: finding["bench_dir"])
    inert_seeds = sorted(scan.inert_seeds, key=lambda finding: finding["bench_dir"])
    inert_summary = dict(sorted(scan.inert_summary.items()))
    phantom_rows = marked.phantom_rows if marked is not None else []
    drifted_rows = marked.drifted_rows if marked is not None else []

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "benchtruth", "version": __version__},
        "host_tag": host_tag,
        "generated_at": generation_time(),
        "inputs": {
            "project_root": ".",
            "bench_list": bench_list.path,
            "bench_list_sha256": bench_list.sha256,
            "claimed_table": claimed_section["path"],
            "claimed_table_sha256": claimed_section["sha256"],
        },
        "parameters": {"rel_tol": rel_tol, "abs_tol": abs_tol},
        "bench_dirs_count": len(scan.bench_dirs),
        "real_run_count": len(kept),
        "unique_combinations": (
            scan.order.distinct_keys if scan.order.increasing else len(set(map(record_key, kept)))
        ),
        "phantom_rows_count": len(phantom_rows),
        "drifted_rows_count": len(drifted_rows),
        "counts": {
            "bench_dirs_counted": len(scan.bench_dirs) - dirs_excluded,
            "bench_dirs_excluded": dirs_excluded,
            "results_seen": sum(summary["results"] for summary in scan.bench_dirs),
            "results_excluded": sum(1 for f in scan.excluded if f.scope is Scope.RESULT),
            "superseded_runs": len(superseded),
            "missing_runs": len(scan.missing_runs),
            "unplanned_runs": len(scan.unplanned_runs),
            "inert_factor_findings": len(inert_factors),
            "excluded_by_code": dict(sorted(Counter(f["code"] for f in excluded).items())),
        },
        "bench_dirs": scan.bench_dirs,
        "claimed_table": dict(claimed_section),
        "phantom_rows": phantom_rows,
        "drifted_rows": drifted_rows,
        "excluded": excluded,
        "superseded_runs": [entry.to_dict() for entry in superseded],
        "warnings": warnings,
        "coverage": scan.coverage,
        "missing_runs": scan.missing_runs,
        "unplanned_runs": scan.unplanned_runs,
        "inert_summary": inert_summary,
        "inert_factors": inert_factors,
        "inert_seeds": inert_seeds,
        "coverage_grid": grid,
        "metric_extraction_mapping": METRIC_EXTRACTION_MAPPING,
        "real_runs": kept_lines,
    }


def _log_narrative(truth: Mapping[str, Any]) -> None:
    """Tell the log what was counted, then what was left out and why."""
    logger.info("host %s; bench list %s", truth["host_tag"], truth["inputs"]["bench_list"])
    for summary in truth["bench_dirs"]:
        if summary["counted"]:
            logger.info(
                "counted %s: %d results, %d real runs, %d results excluded",
                summary["path"],
                summary["results"],
                summary["real_runs"],
                summary["excluded_results"],
            )
    logger.info(
        "counted %d real runs over %d combinations from %d of %d bench dirs",
        truth["real_run_count"],
        truth["unique_combinations"],
        truth["counts"]["bench_dirs_counted"],
        truth["bench_dirs_count"],
    )

    for entry in truth["excluded"]:
        where = f"{entry['path']} {entry['item']}".strip()
        logger.warning("left out %s: %s (%s)", where, entry["code"], entry["detail"])
    for run in truth["superseded_runs"]:
        logger.warning(
            "left out %s:results[%d]: %s by %s",
            run["metrics_path"],
            run["result_index"],
            run["code"],
            run["superseded_by"],
        )
    for entry in truth["warnings"]:
        where = f"{entry['path']} {entry['item']}".strip()
        logger.warning("note %s: %s (%s)", where, entry["code"], entry["detail"])

    claimed = truth["claimed_table"]
    if not claimed["present"]:
        logger.warning("no claimed table at %s: nothing to mark", claimed["path"])
    for row in truth["phantom_rows"]:
        key = "|".join(str(row["claimed"].get(field, "")) for field in KEY_FIELDS)
        logger.warning("phantom claimed row %d (%s): %s", row["row"], key, row["reason"])
    for row in truth["drifted_rows"]:
        key = "|".join(str(value) for value in row["key"].values())
        columns = ", ".join(cell["column"] for cell in row["cells"])
        logger.warning("drifted claimed row %d (%s): %s differ", row["row"], key, columns)


def _discard_when_written(writing: Future[str]) -> None:
    """Wait for ``writing`` to end (told to stop, it ends soon), and remove the unpublished
    file it wrote, if any."""
    futures.wait([writing])
    if not writing.cancelled() and writing.exception() is None:
        discard_file(writing.result())


def _publish_in_order(written: Sequence[tuple[str | None, str]]) -> None:
    """Put each written file (None: nothing to put) in its place, in order; if one cannot
    be, the files not yet in place are removed, not left as temporary files."""
    for position, (temporary, path) in enumerate(written):
        if temporary is None:
            continue
        try:
            publish_file(temporary, path)
        except BaseException:
            for later, _ in written[position + 1 :]:
                if later is not None:
                    discard_file(later)
            raise
        logger.info("wrote %s", os.path.basename(path))


def _remove_earlier_marked_table(marked_path: str) -> None:
    """Remove the marked claimed table an earlier audit left in this output folder.

    This audit had no claimed table, so that file holds another audit's verdicts; beside
    this audit's truth file and report, a reviewer would take them for this one's.
    """
    try:
        os.unlink(marked_path)
    except FileNotFoundError:
        return
    except OSError as error:
        # A folder in its place, or no permission: the audit itself is done and stands.
        logger.warning(
            "could not remove %s (%s): it is not this audit's, which had no claimed table",
            MARKED_CLAIMED_FILE,
            error.strerror or type(error).__name__,
        )
        return
    logger.warning(
        "removed %s: it held an earlier audit's verdicts, and this audit had no claimed table",
        MARKED_CLAIMED_FILE,
    )


def _warn_other_host(previous_host: str | None, host_tag: str) -> None:
    """Say so when this audit replaces the evidence another host left in the same folder."""
    if previous_host not in (None, host_tag):
        logger.warning(
            "replacing the truth file of host %s in this output_dir; give each host its own "
            "output_dir to keep both",
            previous_host,
        )


def run_audit(
    host_tag: object = "4090",
    bench_list: str = "bench_dirs_all.txt",
    output_dir: str = "analysis",
    paper_tables_dir: str | None = None,
    project_root: str = ".",
    allowed_host_tags: Iterable[object] = DEFAULT_HOST_TAGS,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
    workers: int | None = None,
    progress: bool | None = None,
) -> AuditResult:
    """Audit the bench dirs of ``bench_list`` and write the evidence into ``output_dir``.

    Parameters
    ----------
    host_tag:
        The host that ran the benchmark; must be one of ``allowed_host_tags``.
    bench_list:
        The file listing the bench dirs, one a line, relative to ``project_root``.
    output_dir:
        Where the truth JSON, Markdown report, marked claimed table and log go.
    paper_tables_dir:
        The folder holding the claimed ``main_results.csv``; by default
        ``paper_tables`` beside ``output_dir``.
    project_root:
        The folder that holds ``runs/``; every path in the evidence is relative to it.
    rel_tol, abs_tol:
        How far a claimed number may be from the recomputed one and still agree.
    workers:
        Processes that read bench dirs; by default one a core. The result is the same
        for any number.
    progress:
        Show a progress bar while scanning; by default only on a terminal.

    Returns
    -------
    AuditResult
        The truth document and the paths written.

    Raises
    ------
    ParameterError
        For a bad host tag or path parameter, before anything is written.
    BenchListError
        When the bench list cannot be read at all, before anything is written.
    """
    host_tag = normalise_host_tag(host_tag, allowed_host_tags)
    bench_list = normalise_path_parameter("bench_list", bench_list)
    output_dir = normalise_path_parameter("output_dir", output_dir)
    project_root = normalise_path_parameter("project_root", project_root)
    if paper_tables_dir is None or paper_tables_dir == "":
        paper_tables_dir = default_paper_tables_dir(output_dir)
    paper_tables_dir = normalise_path_parameter("paper_tables_dir", paper_tables_dir)
    rel_tol = normalise_tolerance("rel_tol", rel_tol)
    abs_tol = normalise_tolerance("abs_tol", abs_tol)
    check_output_dir(
        "output_dir",
        output_dir,
        files=(
            LOCK_FILE,
            MARKED_CLAIMED_FILE,
            TRUTH_FILE,
            REPORT_FILE,
            COVERAGE_HEATMAP_FILE,
            f"logs/{audit_log_file_name(host_tag)}",
            f"logs/{timings_file_name(host_tag)}",
        ),
    )

    workers = normalise_workers(workers)
    if progress is None:
        progress = sys.stderr.isatty()
    progress = normalise_flag_parameter("progress", progress)
    times = PhaseTimes()

    spill_prefix = new_spill_prefix(output_dir)
    with (
        capture_audit_log() as log_lines,
        cycle_collector_paused(),
        spill_files(spill_prefix),
        contextlib.ExitStack() as audit_scope,
    ):
        with times.phase("read bench list and run logs"):
            listed = read_bench_list(bench_list, project_root)
            logs_dir = os.path.join(os.path.dirname(bench_list), "logs")
            run_logs = index_run_logs(logs_dir, project_root)

        # Nothing is written before the bench list is read: a refusal leaves no trace.
        audit_scope.enter_context(output_dir_lock(output_dir))
        orphans = [
            *remove_orphaned_temporary_files(output_dir),
            *(
                f"logs/{name}"
                for name in remove_orphaned_temporary_files(os.path.join(output_dir, "logs"))
            ),
        ]
        if orphans:
            logger.warning(
                "removed %d temporary files (spill files, half-written outputs) that a killed "
                "audit left in the output_dir: %s",
                len(orphans),
                ", ".join(orphans),
            )
        worker_processes = workers_for(workers, len(listed.entries))
        drawer = audit_scope.enter_context(heatmap_drawer(in_background=worker_processes > 1))
        with times.phase("scan bench dirs"):
            scan = scan_bench_dirs(listed.entries, run_logs, spill_prefix, workers, progress)
        with times.phase("select newest runs"):
            kept_positions, superseded_pairs = newest_indices(
                scan.records, in_order=scan.order.increasing
            )
            kept = [scan.records[position] for position in kept_positions]
            # Copied once into the truth file, and their spill files' pages freed as they go.
            kept_lines = EncodedItems(scan.lines.lines(kept_positions, release=True), "real_runs")
            superseded = [
                Superseded(
                    scan.records[old], scan.records[by].run_dir, scan.records[by].result_index
                )
                for old, by in superseded_pairs
            ]
        with times.phase("build coverage grid"):
            excluded = [finding.to_dict() for finding in scan.excluded]
            grid = coverage_grid(
                scan.bench_dirs,
                scan.plans,
                kept,
                [entry.record for entry in superseded],
                excluded,
                scan.coverage,
            )

        # The heatmap is drawn (beside, where there is a drawer) from here on: on a benchmark
        # of 100k runs drawing it takes as long as everything below, on 1M far less.
        heatmap_path = os.path.join(output_dir, COVERAGE_HEATMAP_FILE)
        with heatmap_drawn_beside(drawer, grid, heatmap_path, times):
            # Not needed by the grid: looked for while the heatmap is drawn.
            with times.phase("look for unlisted dirs"):
                listed.findings.extend(find_unlisted_dirs(listed.entries, project_root))
            with times.phase("mark claimed table"):
                claimed_path = os.path.join(paper_tables_dir, CLAIMED_TABLE_FILE)
                claimed_section, marked, claimed_findings = _mark_claimed(
                    claimed_path, project_root, kept, rel_tol, abs_tol
                )
            with times.phase("build truth document"):
                truth = build_truth_document(
                    host_tag=host_tag,
                    project_root=project_root,
                    bench_list=listed,
                    scan=scan,
                    kept=kept,
                    kept_lines=kept_lines,
                    superseded=superseded,
                    excluded=excluded,
                    grid=grid,
                    run_logs=run_logs,
                    claimed_section=claimed_section,
                    marked=marked,
                    claimed_findings=claimed_findings,
                    rel_tol=rel_tol,
                    abs_tol=abs_tol,
                )
            # The marked claimed table, the truth file and the report take the place of the
            # old ones in that order, once all three are written: an audit that fails before
            # leaves the previous ones as they were. The marked copy goes first: once it
            # exists, nothing of the claimed table is lost even if a later step (or 02)
            # replaces the table itself.
            marked_path = os.path.join(output_dir, MARKED_CLAIMED_FILE)
            truth_path = os.path.join(output_dir, TRUTH_FILE)
            report_path = os.path.join(output_dir, REPORT_FILE)
            # Read before this audit's truth file replaces it.
            previous_host = previous_host_tag(truth_path)
            written_marked = written_report = None
            # The truth file is written in a thread: most of it is the kernel copying run
            # lines and flushing them (a second at 1M runs), which holds no lock, so the log
            # and the report are made meanwhile. Nothing is logged from the thread, so the
            # log keeps its order; told to stop, it stops between two pieces.
            stop_writing = threading.Event()
            with ThreadPoolExecutor(1, thread_name_prefix="benchtruth-truth") as truth_writer:
                writing = truth_writer.submit(
                    write_truth_unpublished, truth_path, truth, stop_writing
                )
                try:
                    if marked is not None:
                        with times.phase("write marked claimed table"):
                            csv_text = frame_to_csv_text(marked.marked, list(marked.marked.columns))
                            written_marked = write_unpublished(marked_path, [csv_text])
                    with times.phase("log what was counted"):
                        _log_narrative(truth)
                    with times.phase("render report"):
                        report_text = render_report(truth)
                    with times.phase("write report"):
                        written_report = write_unpublished(report_path, [report_text])
                    with times.phase("wait for truth file (validated and written beside the log)"):
                        written_truth = writing.result()
                except BaseException:
                    stop_writing.set()
                    for written in (written_marked, written_report):
                        if written is not None:
                            discard_file(written)
                    _discard_when_written(writing)
                    raise

            if marked is None:
                # In the marked table's place in the order: its absence is this audit's.
                _remove_earlier_marked_table(marked_path)
            _warn_other_host(previous_host, host_tag)
            _publish_in_order(
                [
                    (written_marked, marked_path),
                    (written_truth, truth_path),
                    (written_report, report_path),
                ]
            )
        logger.info("wrote %s", COVERAGE_HEATMAP_FILE)

    log_path = os.path.join(output_dir, "logs", audit_log_file_name(host_tag))
    atomic_write_text(log_path, "\n".join(log_lines) + "\n")
    timings_path = os.path.join(output_dir, "logs", timings_file_name(host_tag))
    atomic_write_text(
        timings_path,
        times.render(
            bench_dirs=truth["bench_dirs_count"],
            real_runs=truth["real_run_count"],
            worker_processes=worker_processes,
        ),
    )
    return AuditResult(
        {**truth, "real_runs": None},
        truth_path,
        report_path,
        log_path,
        None if marked is None else marked_path,
        heatmap_path,
        times.seconds,
        kept,
    )


def build_tables(
    truthfulness_json: str,
    output_dir: str,
    host_tag: object = "4090",
    allowed_host_tags: Iterable[object] = DEFAULT_HOST_TAGS,
    project_root: str | None = None,
    allow_changed_artifacts: bool = False,
    decimals: int = 3,
) -> dict[str, pd.DataFrame]:
    """Write the paper tables and their figure from a truth document alone.

    Writes ``main_results.csv``, ``efficiency.csv``, ``main_results.tex`` and
    ``metrics_by_configuration.png``. A table of the same name that benchtruth did not
    write (the claimed one) is kept beside it first, under a name that never overwrites
    an earlier kept copy. With ``project_root``, every artifact the truth file records
    is re-hashed first, and tables are refused when one changed or went missing, unless
    ``allow_changed_artifacts``.

    Returns
    -------
    dict
        The two frames, by file name.

    Raises
    ------
    ArtifactsChangedError
        When verification finds changed or missing artifacts and they are not allowed.
    """
    host_tag = normalise_host_tag(host_tag, allowed_host_tags)
    truthfulness_json = normalise_path_parameter("truthfulness_json", truthfulness_json)
    output_dir = normalise_path_parameter("output_dir", output_dir)
    log_name = f"tables_{host_tag}.log"
    check_output_dir(
        "output_dir",
        output_dir,
        files=(
            MAIN_RESULTS_FILE,
            EFFICIENCY_FILE,
            LATEX_FILE,
            TABLES_MANIFEST_FILE,
            METRICS_PLOT_FILE,
            f"logs/{log_name}",
        ),
    )

    with capture_audit_log() as log_lines:
        truth = load_truth(truthfulness_json)
        logger.info(
            "host %s: building tables from %s (%d real runs, audited on host %s)",
            host_tag,
            os.path.basename(truthfulness_json),
            len(truth["real_runs"]),
            truth.get("host_tag"),
        )
        if project_root is not None:
            _verify_before_tables(truthfulness_json, project_root, allow_changed_artifacts)

        frames = write_tables(
            truth["real_runs"], output_dir, truth.get("inert_factors", ()), decimals
        )
        save_png(
            plot_metrics_by_configuration(frames[MAIN_RESULTS_FILE]),
            os.path.join(output_dir, METRICS_PLOT_FILE),
        )
        logger.info("wrote %s", METRICS_PLOT_FILE)

    log_path = os.path.join(output_dir, "logs", log_name)
    atomic_write_text(log_path, "\n".join(log_lines) + "\n")
    return frames


def _verify_before_tables(truthfulness_json: str, project_root: str, allowed: bool) -> None:
    report = verify_truth(truthfulness_json, project_root)
    changed = report["changed"] + report["missing"]
    logger.info(
        "verified %d artifacts: %d unchanged, %d changed, %d missing",
        sum(len(paths) for paths in report.values()),
        len(report["unchanged"]),
        len(report["changed"]),
        len(report["missing"]),
    )
    if not changed:
        return
    for state in ("changed", "missing"):
        for path in report[state]:
            logger.warning("%s since the audit: %s", state, path)
    if not allowed:
        raise ArtifactsChangedError(report["changed"], report["missing"])
