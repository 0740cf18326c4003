"""Measure the audit against the cost of reading its inputs (issue: speed and scale).

Generates a synthetic runner tree (48 results a dir, the three artifact files at the
sizes of the real runner output), then measures in one process, side by side:

- the floor: read and parse every listed dir's metrics.json (json), STATUS_RUN.json
  (json) and resolved_config.yaml (yaml, C loader) and nothing else;
- the audit through ``run_audit`` (no notebook);
- the whole 01 notebook through papermill (up to --papermill-max runs).

Prints runs, seconds, runs per second, peak RSS and audit/floor, and writes the figures
as JSON. A script, not a test: timings are read by people, not asserted.

This machine's timings wander from one run to the next (the floor of a million runs took
14.6 s and 23.4 s in two samples of one run, minutes apart), so each measurement is repeated
(--repeat, floor and audit taking turns) and the median is reported, with every sample
kept in the JSON.

    .venv/bin/python benchmarks/bench_audit.py                 # 1,000 10,000 100,000 runs
    .venv/bin/python benchmarks/bench_audit.py --runs 1000000  # on request
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

RESULTS_PER_DIR = 48
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A real runner dir: its three artifact files are the templates, so that sizes, key order
# and the YAML the C loader parses are what a real benchmark has.
TEMPLATE_DIR = os.path.join(
    REPO, "examples", "realruns", "runs", "benchmarks", "b11_v2_edgar_off_h14_sf0_20261203_160959"
)


def _templates() -> tuple[dict, dict, str]:
    with open(os.path.join(TEMPLATE_DIR, "metrics.json")) as handle:
        metrics = json.load(handle)
    with open(os.path.join(TEMPLATE_DIR, "STATUS_RUN.json")) as handle:
        status_run = json.load(handle)
    with open(os.path.join(TEMPLATE_DIR, "configs", "resolved_config.yaml")) as handle:
        config_text = handle.read()
    return metrics, status_run, config_text


def generate_tree(root: str, dirs: int) -> str:
    """Write ``dirs`` bench dirs and a bench list under ``root``; return the list's path.

    Each dir is the template dir with its own exp_name, timestamp and metric values, so
    no two dirs share a key and every result is a real run.
    """
    metrics, status_run, config_text = _templates()
    template_name = metrics["exp_name"]
    listed = []
    for number in range(dirs):
        exp_name = f"bench_{number:07d}"
        clock = f"{number // 3600 % 24:02d}{number // 60 % 60:02d}{number % 60:02d}"
        stamp = f"2026{1 + number % 12:02d}{1 + number % 28:02d}_{clock}"
        name = f"{exp_name}_{stamp}"
        bench = os.path.join(root, "runs", "benchmarks", name)
        os.makedirs(os.path.join(bench, "configs"))

        document = dict(metrics, exp_name=exp_name, timestamp=stamp)
        # Every run its own numbers, as in a healthy benchmark (the template's are
        # bit-identical across configurations, which would flood the inert findings).
        document["results"] = [
            dict(
                result,
                rmse=result["rmse"] + index * 1e-3 + number * 1e-7,
                mse=result["mse"] + index + number * 1e-4,
                mae=result["mae"] + index * 1e-3,
                r2=result["r2"] - index,
            )
            for index, result in enumerate(metrics["results"])
        ]
        with open(os.path.join(bench, "metrics.json"), "w") as handle:
            json.dump(document, handle, indent=2)
        with open(os.path.join(bench, "STATUS_RUN.json"), "w") as handle:
            json.dump(dict(status_run, exp_name=exp_name, timestamp=stamp), handle, indent=2)
        with open(os.path.join(bench, "configs", "resolved_config.yaml"), "w") as handle:
            handle.write(config_text.replace(template_name, exp_name))
        listed.append(f"runs/benchmarks/{name}")

    stamp_dir = os.path.join(root, "runs", "orchestrator", "bench")
    os.makedirs(stamp_dir)
    bench_list = os.path.join(stamp_dir, "bench_dirs_all.txt")
    with open(bench_list, "w") as handle:
        handle.write("\n".join(listed) + "\n")
    return bench_list


def floor(bench_list: str, root: str) -> None:
    """The bare cost: read and parse the three artifact files of every listed dir."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(bench_list) as handle:
        dirs = [line.strip() for line in handle if line.strip()]
    for bench in dirs:
        path = os.path.join(root, bench)
        with open(os.path.join(path, "metrics.json"), "rb") as handle:
            json.loads(handle.read())
        with open(os.path.join(path, "STATUS_RUN.json"), "rb") as handle:
            json.loads(handle.read())
        with open(os.path.join(path, "configs", "resolved_config.yaml"), "rb") as handle:
            yaml.load(handle.read(), Loader=loader)


def _settle() -> None:
    """Write every dirty page to disk before a measurement starts.

    Otherwise the kernel writes the freshly generated tree (1 GB at a million runs) and the
    previous audit's outputs back to disk 30 s later, in the middle of whichever
    measurement is running then, and charges it to that one.
    """
    if hasattr(os, "sync"):
        os.sync()


def _measure_in_child(kind: str, bench_list: str, root: str, out: str) -> dict:
    _settle()
    # Each measurement in a fresh process, so that peak RSS is its own.
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import bench_audit
# Imports are a fixed cost paid once a process (about a second for pandas, matplotlib
# and jsonschema): measured apart from the work that grows with runs.
if {kind!r} == "audit":
    from benchtruth_utils import run_audit
def cpu_seconds():
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(usage.ru_utime + usage.ru_stime for usage in used)
cpu_start = cpu_seconds()
start = time.perf_counter()
if {kind!r} == "floor":
    bench_audit.floor({bench_list!r}, {root!r})
else:
    run_audit(bench_list={bench_list!r}, output_dir={out!r}, project_root={root!r})
seconds = time.perf_counter() - start
# CPU of this process and the workers and drawer it waited for: steadier than seconds on a
# machine whose speed wanders, and what two cores share.
cpu = cpu_seconds() - cpu_start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# The largest of the worker processes the audit started (none for the floor).
workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak,
                  "worker_peak_rss_mb": workers_peak}}))
"""
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak_tree_kb, _ = _wait_sampling_memory(process)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the {kind} measurement failed:\n{stderr}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    if peak_tree_kb:
        figures["tree_peak_rss_mb"] = peak_tree_kb / 1024
    return figures


def _wait_sampling_memory(process: subprocess.Popen) -> tuple[int, int]:
    """Wait for ``process`` to end; return the peak resident memory of it and its
    descendants together, and of the largest single one of them, in kB, as sampled every
    TREE_SAMPLE_SECONDS (a peak shorter than that can be missed)."""
    peak_total_kb = peak_largest_kb = 0
    while process.poll() is None:
        total_kb, largest_kb = _tree_rss_kb(process.pid)
        peak_total_kb = max(peak_total_kb, total_kb)
        peak_largest_kb = max(peak_largest_kb, largest_kb)
        time.sleep(TREE_SAMPLE_SECONDS)
    return peak_total_kb, peak_largest_kb


# How often the memory of the measured process and its children is sampled.
TREE_SAMPLE_SECONDS = 0.1


def _tree_rss_kb(pid: int) -> tuple[int, int]:
    """The resident memory of a process and all its descendants together, and of the
    largest of them, in kB (Linux's /proc; 0 elsewhere). Pages that a forked child shares
    with its parent count twice in the sum, so it errs high."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            rss = next((int(line.split()[1]) for line in handle if line.startswith("VmRSS:")), 0)
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(child) for child in handle.read().split()]
    except (OSError, ValueError):
        return 0, 0
    total, largest = rss, rss
    for child in children:
        child_total, child_largest = _tree_rss_kb(child)
        total += child_total
        largest = max(largest, child_largest)
    return total, largest


def _measure_papermill(bench_list: str, root: str, out: str) -> dict:
    notebook = os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "notebooks", "01_audit.ipynb"
    )
    os.makedirs(out, exist_ok=True)
    _settle()
    start = time.perf_counter()
    process = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "papermill"),
            notebook,
            os.path.join(out, "01_audit.ipynb"),
            "-k",
            "python3",
            "--no-progress-bar",
            "-p",
            "bench_list",
            bench_list,
            "-p",
            "project_root",
            root,
            "-p",
            "output_dir",
            out,
            # As run_audit is called: the claimed table looked for beside output_dir (an
            # empty value), not at the notebook's default, the bundled example's.
            "-p",
            "paper_tables_dir",
            "",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Sampled from /proc: this script's RUSAGE_CHILDREN would give the largest of every
    # process it has ever waited for, earlier measurements' included.
    peak_total_kb, peak_largest_kb = _wait_sampling_memory(process)
    seconds = time.perf_counter() - start
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the papermill measurement failed:\n{stderr}")
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_largest_kb / 1024,
        "tree_peak_rss_mb": peak_total_kb / 1024,
    }


def _phase_seconds(out: str) -> dict[str, float]:
    """The audit's own phase timings, from the timings log it wrote into ``out``."""
    phases = {}
    for path in glob.glob(os.path.join(out, "logs", "*.timings.log")):
        with open(path) as handle:
            for line in handle:
                name, _, seconds = line.rstrip().rpartition("  ")
                if seconds.endswith(" s") and name.strip() != "total":
                    phases[name.strip()] = float(seconds[:-2])
    return phases


def _median(samples: list[dict]) -> dict:
    """The sample of median time (the lower middle one of an even count), with the
    seconds of all samples, the median CPU seconds and the largest peak memory of any."""
    middle = (len(samples) - 1) // 2
    median = dict(sorted(samples, key=lambda sample: sample["seconds"])[middle])
    median["samples_seconds"] = [round(sample["seconds"], 3) for sample in samples]
    if all("cpu_seconds" in sample for sample in samples):
        median["cpu_seconds"] = sorted(sample["cpu_seconds"] for sample in samples)[middle]
    median["peak_rss_mb"] = max(sample["peak_rss_mb"] for sample in samples)
    for figure in ("worker_peak_rss_mb", "tree_peak_rss_mb"):
        if any(figure in sample for sample in samples):
            median[figure] = max(sample.get(figure, 0) for sample in samples)
    return median


def markdown_table(rows: list[dict]) -> str:
    """The figures as the README's table: one line a tree size."""
    by_runs: dict[int, dict[str, dict]] = {}
    for row in rows:
        by_runs.setdefault(row["runs"], {})[row["what"]] = row
    lines = [
        "| runs | floor | audit | audit / floor | runs/s | peak RSS: main / largest child "
        "/ all processes | papermill 01 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for runs, measured in sorted(by_runs.items()):
        floor_row, audit_row = measured["floor"], measured["audit"]
        papermill = measured.get("papermill")
        notebook = f"{papermill['seconds']:.2f} s" if papermill else "(not run)"
        memory = " / ".join(
            f"{audit_row[figure]:.0f} MB" if audit_row.get(figure) else "-"
            for figure in ("peak_rss_mb", "worker_peak_rss_mb", "all_processes_peak_rss_mb")
        )
        lines.append(
            f"| {runs:,} | {floor_row['seconds']:.2f} s | {audit_row['seconds']:.2f} s "
            f"| {audit_row['vs_floor']:.2f}x | {audit_row['runs_per_second']:,} "
            f"| {memory} | {notebook} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=int,
        nargs="+",
        default=[1000, 10000, 100000],
        help=f"tree sizes, rounded to whole dirs of {RESULTS_PER_DIR} runs",
    )
    parser.add_argument("--papermill-max", type=int, default=10000)
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results.json"))
    parser.add_argument("--repeat", type=int, default=3, help="samples a measurement")
    arguments = parser.parse_args()
    # Refused before minutes of measuring, not after.
    if any(runs < RESULTS_PER_DIR for runs in arguments.runs):
        parser.error(f"--runs: each size must be at least one dir, {RESULTS_PER_DIR} runs")
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1")
    json_folder = os.path.dirname(os.path.abspath(arguments.json))
    if os.path.isdir(arguments.json) or not os.access(json_folder, os.W_OK | os.X_OK):
        parser.error(f"--json {arguments.json}: not a file this script can write")

    rows = []
    for runs in arguments.runs:
        dirs = max(1, round(runs / RESULTS_PER_DIR))
        root = tempfile.mkdtemp(prefix="benchtruth-bench-")
        try:
            bench_list = generate_tree(root, dirs)
            real_runs = dirs * RESULTS_PER_DIR
            samples: dict[str, list[dict]] = {"floor": [], "audit": [], "papermill": []}
            for _ in range(arguments.repeat):
                # Taking turns, so that a slow spell of the machine falls on both.
                samples["floor"].append(_measure_in_child("floor", bench_list, root, ""))
                out = os.path.join(root, "out")
                samples["audit"].append(_measure_in_child("audit", bench_list, root, out))
                samples["audit"][-1]["phases"] = _phase_seconds(out)
                if real_runs <= arguments.papermill_max:
                    samples["papermill"].append(
                        _measure_papermill(bench_list, root, os.path.join(root, "out_nb"))
                    )
            measured = {kind: _median(taken) for kind, taken in samples.items() if taken}
        finally:
            shutil.rmtree(root, ignore_errors=True)

        for kind, figures in measured.items():
            row = {
                "runs": real_runs,
                "what": kind,
                "seconds": round(figures["seconds"], 3),
                "runs_per_second": round(real_runs / figures["seconds"]),
                "peak_rss_mb": round(figures["peak_rss_mb"], 1),
                "vs_floor": round(figures["seconds"] / measured["floor"]["seconds"], 2),
            }
            if "cpu_seconds" in figures:
                row["cpu_seconds"] = round(figures["cpu_seconds"], 3)
            if figures.get("worker_peak_rss_mb") and kind == "audit":
                row["worker_peak_rss_mb"] = round(figures["worker_peak_rss_mb"], 1)
            if figures.get("tree_peak_rss_mb"):
                row["all_processes_peak_rss_mb"] = round(figures["tree_peak_rss_mb"], 1)
            row["samples_seconds"] = figures["samples_seconds"]
            if "phases" in figures:
                row["phases"] = figures["phases"]
            rows.append(row)
            memory = [
                f"largest child {row['worker_peak_rss_mb']:.1f} MB"
                if "worker_peak_rss_mb" in row
                else "",
                f"all processes {row['all_processes_peak_rss_mb']:.1f} MB"
                if "all_processes_peak_rss_mb" in row
                else "",
            ]
            workers = f"  ({', '.join(filter(None, memory))})" if any(memory) else ""
            cpu = f" (CPU {row['cpu_seconds']:.2f} s)" if "cpu_seconds" in row else ""
            print(
                f"{row['runs']:>9} runs  {kind:<9} {row['seconds']:>9.2f} s{cpu} "
                f"{row['runs_per_second']:>9} runs/s  {row['peak_rss_mb']:>8.1f} MB peak  "
                f"{row['vs_floor']:>6.2f} x floor{workers}  "
                f"(samples {', '.join(f'{t:.2f}' for t in row['samples_seconds'])} s)",
                flush=True,
            )
            if "phases" in row:
                print("    " + ", ".join(f"{k} {v:.2f} s" for k, v in row["phases"].items()))

    os.makedirs(os.path.dirname(arguments.json) or ".", exist_ok=True)
    with open(arguments.json, "w") as handle:
        json.dump(rows, handle, indent=2)
        handle.write("\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
