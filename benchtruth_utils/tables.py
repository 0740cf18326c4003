"""The paper tables, built from the truth document's real runs and from nothing else."""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import file_sha256
from .coverage import FACTORS
from .errors import ParameterError
from .latex import LATEX_FILE, main_results_latex
from .outputs import atomic_write_bytes, frame_to_csv_text, write_json
from .runs import EFFICIENCY_METRICS, KEY_FIELDS, QUALITY_METRICS

logger = logging.getLogger(__name__)

MAIN_RESULTS_COLUMNS = (
    *KEY_FIELDS,
    *(f"{metric}_mean" for metric in QUALITY_METRICS),
    *(f"{metric}_std" for metric in QUALITY_METRICS),
    "n_runs",
    "note",
)
EFFICIENCY_COLUMNS = (*KEY_FIELDS, "metric_name", "metric_value", "note")
TEXT_COLUMNS = ("exp_name", "backbone", "fusion_type", "module_variant", "metric_name", "note")

MAIN_RESULTS_FILE = "main_results.csv"
EFFICIENCY_FILE = "efficiency.csv"
TABLES_MANIFEST_FILE = "benchtruth_tables_manifest.json"


NOTE_TIMING_FROM_LOG = "estimated_from_run_log"
NOTE_TIMING_NOT_LOGGED = "timing_not_logged"
NOTE_CUDA_MEM_NOT_LOGGED = "cuda_mem_not_logged"


def runs_frame(real_runs: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """The real runs in long form: one row per run, missing values as NaN.

    ``real_runs`` is the truth document's list, or a frame of run records (the audit's,
    which spares a million runs a dict each).
    """
    columns = [*KEY_FIELDS, "seed", *QUALITY_METRICS, *EFFICIENCY_METRICS, "train_time_source"]
    if isinstance(real_runs, pd.DataFrame):
        frame = real_runs.reindex(columns=columns)
    else:
        frame = pd.DataFrame([{name: run.get(name) for name in columns} for run in real_runs])
    if frame.empty:
        frame = pd.DataFrame(columns=columns)

    for metric in (*QUALITY_METRICS, *EFFICIENCY_METRICS):
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce").astype("float64")
    frame["use_edgar"] = frame["use_edgar"].astype(bool)
    return frame


def summarize_runs(real_runs: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Per key: n_runs, and mean, sample std and count of finite values of every metric.

    The std is taken with ddof 1 and is missing when fewer than two values exist.
    """
    runs = runs_frame(real_runs)
    grouped = runs.groupby(list(KEY_FIELDS), sort=True, dropna=False)

    summary = grouped.size().rename("n_runs").to_frame()
    for metric in QUALITY_METRICS:
        stats = grouped[metric].agg(["mean", "std", "count"])
        overflowed = ~np.isfinite(stats["mean"]) & stats["count"].gt(0)
        overflowed |= ~np.isfinite(stats["std"]) & stats["count"].gt(1)
        if overflowed.any():
            # Finite values whose sum overflows: recompute those groups on a scaled copy.
            for key in stats.index[overflowed]:
                stats.loc[key, ["mean", "std"]] = _scaled_mean_std(grouped[metric].get_group(key))
        summary[f"{metric}_mean"] = stats["mean"]
        summary[f"{metric}_std"] = stats["std"]
        summary[f"{metric}_count"] = stats["count"]
    return summary.reset_index()


def _scaled_mean_std(values: pd.Series) -> tuple[float, float]:
    """Mean and sample std of finite values near the float limit, without overflow."""
    finite = values.dropna().to_numpy(dtype="float64")
    scale = float(np.max(np.abs(finite)))
    scaled = finite / scale
    mean = float(np.mean(scaled)) * scale
    std = float(np.std(scaled, ddof=1)) * scale if len(finite) > 1 else float("nan")
    return mean, std


def _shortfall_note(row: Mapping[str, Any]) -> str:
    parts = [
        f"{metric}: {int(row[f'{metric}_count'])} of {int(row['n_runs'])} runs finite"
        for metric in QUALITY_METRICS
        if row[f"{metric}_count"] < row["n_runs"]
    ]
    return "; ".join(parts)


def inert_factors_by_key(inert_factors: Iterable[Mapping[str, Any]]) -> dict[tuple, list[str]]:
    """For every key in an inert-factor finding, the factors that had no effect on it."""
    factors: dict[tuple, set[str]] = {}
    for finding in inert_factors:
        for group in finding["configurations"]:
            for config in group:
                key = (
                    finding["exp_name"],
                    config["backbone"],
                    config["fusion_type"],
                    config["module_variant"],
                    finding["use_edgar"],
                )
                factors.setdefault(key, set()).add(finding["factor"])
    return {key: [f for f in FACTORS if f in found] for key, found in factors.items()}


def _row_note(shortfall: str, inert: list[str]) -> str:
    parts = [shortfall] if shortfall else []
    if inert:
        parts.append(f"warning: {', '.join(inert)} had no effect (bit-identical metrics)")
    return "; ".join(parts)


def main_results_frame(
    real_runs: Iterable[Mapping[str, Any]],
    inert_factors: Iterable[Mapping[str, Any]] = (),
) -> pd.DataFrame:
    """The main results table: one row per key, sorted by key, in the published column order.

    ``note`` names the metrics with fewer finite values than ``n_runs`` and warns when
    the row's configuration belongs to an inert-factor finding.
    """
    summary = summarize_runs(real_runs)
    if summary.empty:
        return pd.DataFrame(columns=list(MAIN_RESULTS_COLUMNS))

    count_columns = [f"{metric}_count" for metric in QUALITY_METRICS]
    notes = summary[["n_runs", *count_columns]].apply(_shortfall_note, axis=1)
    inert = inert_factors_by_key(inert_factors)
    keys = summary[list(KEY_FIELDS)].itertuples(index=False, name=None)
    summary["note"] = [
        _row_note(shortfall, inert.get(key, [])) for shortfall, key in zip(notes, keys, strict=True)
    ]
    summary["n_runs"] = summary["n_runs"].astype("int64")
    return summary[list(MAIN_RESULTS_COLUMNS)]


def efficiency_frame(real_runs: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The efficiency table in long form: train_time_sec and max_cuda_mem_mb for every key.

    A value is the mean over the runs that have one; a blank value always has a note.
    """
    runs = runs_frame(real_runs)
    rows = []
    for key, group in runs.groupby(list(KEY_FIELDS), sort=True, dropna=False):
        for metric in EFFICIENCY_METRICS:
            values = group[metric].dropna()
            value = float(values.mean()) if len(values) else None
            rows.append(
                {
                    **dict(zip(KEY_FIELDS, key, strict=True)),
                    "metric_name": metric,
                    "metric_value": value,
                    "note": _efficiency_note(metric, group),
                }
            )

    return pd.DataFrame(rows, columns=list(EFFICIENCY_COLUMNS))


def _efficiency_note(metric: str, group: pd.DataFrame) -> str:
    have = int(group[metric].notna().sum())
    total = len(group)

    if metric == "max_cuda_mem_mb":
        missing = NOTE_CUDA_MEM_NOT_LOGGED
        from_log = 0
    else:
        missing = NOTE_TIMING_NOT_LOGGED
        from_log = int((group["train_time_source"] == "run_log").sum())

    notes = []
    if from_log:
        notes.append(
            NOTE_TIMING_FROM_LOG
            if from_log == total
            else f"{NOTE_TIMING_FROM_LOG} ({from_log} of {total} runs)"
        )
    if have == 0:
        notes.append(missing)
    elif have < total:
        notes.append(f"{missing} for {total - have} of {total} runs")
    return "; ".join(notes)


def read_tables_manifest(folder: str) -> dict[str, dict[str, str]]:
    """What benchtruth wrote into a tables folder before: ``written`` hashes, ``kept`` copies.

    ``written`` maps a table name to the sha256 of the file benchtruth wrote; ``kept``
    maps it to the file that keeps the foreign table (the claimed one) it replaced.
    A missing or damaged manifest reads as empty: every table then counts as foreign.
    """
    try:
        with open(os.path.join(folder, TABLES_MANIFEST_FILE), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return {"written": {}, "kept": {}}
    if not isinstance(manifest, dict):
        return {"written": {}, "kept": {}}
    return {
        part: {k: v for k, v in manifest.get(part, {}).items() if isinstance(v, str)}
        if isinstance(manifest.get(part), dict)
        else {}
        for part in ("written", "kept")
    }


def written_by_benchtruth(path: str) -> tuple[bool, str | None]:
    """Whether the table at ``path`` is one benchtruth wrote, and the kept claimed table if so."""
    folder, name = os.path.split(path)
    manifest = read_tables_manifest(folder or ".")
    digest = file_sha256(path)
    if digest is None or manifest["written"].get(name) != digest:
        return False, None
    kept = manifest["kept"].get(name)
    return True, os.path.join(folder, kept) if kept else None


def _keep_foreign_copy(path: str, written: Mapping[str, str]) -> str | None:
    """Keep a table we did not write (the claimed one) beside itself before replacing it.

    The kept name carries the content's hash, so it can never overwrite an earlier
    kept copy of different content; the same content is kept once. A file of that name
    whose content is not the table's (emptied, say) is no copy: it is written again.

    Raises
    ------
    ParameterError
        When a folder stands at the kept name, before the table is replaced.
    """
    digest = file_sha256(path)
    name = os.path.basename(path)
    if digest is None or written.get(name) == digest:
        return None

    stem, suffix = os.path.splitext(path)
    kept = f"{stem}.kept_{digest[:12]}{suffix}"
    if os.path.isdir(kept):
        raise ParameterError(
            "output_dir",
            os.path.dirname(path),
            f"a folder in which '{os.path.basename(kept)}' is not a folder (remove it)",
        )
    if file_sha256(kept) != digest:
        with open(path, "rb") as handle:
            atomic_write_bytes(kept, handle.read())
    return kept


def write_tables(
    real_runs: list[Mapping[str, Any]],
    output_dir: str,
    inert_factors: Iterable[Mapping[str, Any]] = (),
    decimals: int = 3,
) -> dict[str, pd.DataFrame]:
    """Write main_results.csv, efficiency.csv and main_results.tex into ``output_dir``.

    A file of one of those names that benchtruth did not write (the claimed table) is
    kept first. Returns the two frames by file name.
    """
    previous = read_tables_manifest(output_dir)
    frames = {
        MAIN_RESULTS_FILE: main_results_frame(real_runs, inert_factors),
        EFFICIENCY_FILE: efficiency_frame(real_runs),
    }
    texts = {name: frame_to_csv_text(frame, TEXT_COLUMNS) for name, frame in frames.items()}
    texts[LATEX_FILE] = main_results_latex(frames[MAIN_RESULTS_FILE], decimals)

    manifest: dict[str, dict[str, str]] = {"written": {}, "kept": dict(previous["kept"])}
    for name, text in texts.items():
        path = os.path.join(output_dir, name)
        kept = _keep_foreign_copy(path, previous["written"]) if os.path.exists(path) else None
        if kept is not None:
            manifest["kept"][name] = os.path.basename(kept)
            logger.warning(
                "%s was not written by benchtruth; kept it as %s before replacing it",
                name,
                os.path.basename(kept),
            )

        atomic_write_bytes(path, text.encode("utf-8"))
        manifest["written"][name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        logger.info("wrote %s", name)

    # An older builder leaves parquet and LaTeX twins of its tables beside them; they still
    # hold what the audit found wrong, so the log names them.
    others = sorted(
        os.path.relpath(path, output_dir)
        for pattern in ("*.parquet", "*.tex", os.path.join("tables", "*.tex"))
        for path in glob.glob(os.path.join(glob.escape(output_dir), pattern))
        if os.path.relpath(path, output_dir) not in texts
    )
    if others:
        logger.warning("not rebuilt by benchtruth, do not cite: %s", ", ".join(others))

    write_json(os.path.join(output_dir, TABLES_MANIFEST_FILE), manifest)
    return frames
