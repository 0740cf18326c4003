"""Merging the truth files of several hosts into one truth file that 02 builds tables from.

Each host audits its own disk; only the small truth files travel. The merge never
chooses between hosts: the same run (key and seed) reported by two hosts with
different metrics is a conflict, listed in ``conflicts`` and left out of ``real_runs``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import __version__
from .auditlog import capture_audit_log
from .coverage import column_label_order
from .errors import BenchtruthError, ParameterError, TruthFileError
from .evidence import check_executed_notebook
from .outputs import FileRange, atomic_write_text
from .params import check_output_dir, normalise_path_parameter
from .report import md_table
from .runs import KEY_FIELDS, QUALITY_METRICS
from .truth import (
    SCHEMA_VERSION,
    TRUTH_FILE,
    check_schema_version,
    generation_time,
    load_truth,
    previous_host_tag,
    truth_json_chunks,
    write_truth,
)

logger = logging.getLogger(__name__)

MERGED_HOST_TAG = "merged"
MERGED_REPORT_FILE = "benchmark_truthfulness_merged.md"
MERGED_LOG_FILE = os.path.join("logs", "benchmark_truthfulness_merged.log")

CONFLICT_COLUMNS = (*KEY_FIELDS, "seed", "host_tag", *QUALITY_METRICS, "run_dir", "result_index")
MERGED_FROM_COLUMNS = ("host_tag", "generated_at", "sha256")

NOTE_INPUTS_DIFFER = (
    "the merged files were audited from different inputs (bench list or claimed table); "
    "'inputs' and 'claimed_table' are those of the first file in merged_from, and each "
    "file's own are in its merged_from entry"
)
NOTE_PARAMETERS_DIFFER = (
    "the merged files were audited with different tolerances; 'parameters' are those of "
    "the first file in merged_from, and each file's own are in its merged_from entry"
)
NOTE_MAPPING_DIFFERS = (
    "the merged files read their metrics differently (metric_extraction_mapping differs); "
    "the first in sorted order is kept"
)


class ExecutedNotebookError(BenchtruthError):
    """Executed notebooks handed to the merge that are not evidence of a complete run."""

    def __init__(self, problems: Mapping[str, list[str]]) -> None:
        self.problems = dict(problems)
        listed = "; ".join(f"{path}: {', '.join(found)}" for path, found in self.problems.items())
        super().__init__(f"{len(self.problems)} executed notebooks are not evidence: {listed}")


# --- canonical order ---------------------------------------------------------------------


def _canonical(value: Any) -> str:
    """One text per JSON value, whatever the key order: what dedupe and sorting compare."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _sort_value(value: Any) -> tuple:
    # Seeds are integers or "all seeds", keys hold text and booleans: rank types first so
    # that sorting never compares an int with a str.
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, _canonical(value))


def _sorted_unique(items: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> list[dict]:
    """The items without exact duplicates, sorted by ``fields`` and then by their whole text."""
    unique = {_canonical(item): dict(item) for item in items}
    return [
        unique[text]
        for text in sorted(
            unique, key=lambda text: (*(_sort_value(unique[text].get(f)) for f in fields), text)
        )
    ]


def _tagged(item: Mapping[str, Any], host_tag: str) -> dict[str, Any]:
    """The item with a ``host_tag`` (kept when it has one already, as in a merged file)."""
    tag = item.get("host_tag", host_tag)
    return {**{name: value for name, value in item.items() if name != "host_tag"}, "host_tag": tag}


def truth_digest(document: Mapping[str, Any]) -> str:
    """The sha256 of the document as :func:`write_truth` writes it: its file's sha256."""
    digest = hashlib.sha256()
    for chunk in truth_json_chunks(document):
        if isinstance(chunk, FileRange):
            chunk = chunk.read()
        digest.update(
            chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "backslashreplace")
        )
    return digest.hexdigest()


# --- runs ----------------------------------------------------------------------------------


def _run_key(run: Mapping[str, Any]) -> tuple:
    return (*(run[field] for field in KEY_FIELDS), run["seed"])


def _run_order(run: Mapping[str, Any]) -> tuple:
    return (run["host_tag"], run["run_dir"], run["result_index"], _canonical(run))


def _metric_bits(value: Any) -> str | None:
    # Bit-equal, not approximately equal; a missing metric (null) equals a missing one.
    if value is None or value != value:
        return None
    return float(value).hex()


def _merge_runs(documents: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Real runs of all hosts, one per key and seed, and the key-seed pairs the hosts dispute.

    A merged input's conflicts go back into the pool, so that a third host's run of the
    same key and seed joins the conflict rather than being chosen.
    """
    pool: dict[tuple, list[dict]] = {}
    for document in documents:
        candidates = [
            *document["real_runs"],
            *(run for conflict in document.get("conflicts", []) for run in conflict["runs"]),
        ]
        for run in candidates:
            pool.setdefault(_run_key(run), []).append(_tagged(run, document["host_tag"]))

    kept: list[dict] = []
    conflicts: list[dict] = []
    for key in sorted(pool, key=lambda key: tuple(_sort_value(part) for part in key)):
        # One run per distinct set of metrics, the first by host, run dir and position:
        # hosts that agree collapse to one run, so merging merged files changes nothing.
        by_metrics: dict[tuple, dict] = {}
        for run in pool[key]:
            bits = tuple(_metric_bits(run.get(metric)) for metric in QUALITY_METRICS)
            if bits not in by_metrics or _run_order(run) < _run_order(by_metrics[bits]):
                by_metrics[bits] = run
        distinct = sorted(by_metrics.values(), key=_run_order)

        if len(distinct) == 1:
            kept.append(distinct[0])
        else:
            conflicts.append(
                {
                    "key": dict(zip(KEY_FIELDS, key[:-1], strict=True)),
                    "seed": key[-1],
                    "runs": distinct,
                }
            )
    return kept, conflicts


# --- the rest of the document ----------------------------------------------------------------


def _source_entries(document: Mapping[str, Any], digest: str) -> list[dict[str, Any]]:
    """What ``merged_from`` records of one input: itself, or the files a merged input came from."""
    if "merged_from" in document:
        return [dict(entry) for entry in document["merged_from"]]
    return [
        {
            "host_tag": document["host_tag"],
            "generated_at": document["generated_at"],
            "sha256": digest,
            "tool_version": document["tool"]["version"],
            "inputs": document["inputs"],
            "parameters": document["parameters"],
            "claimed_table": document["claimed_table"],
        }
    ]


def _merged_list(
    documents: Sequence[Mapping[str, Any]], name: str, fields: Sequence[str], tag: bool
) -> list[dict]:
    items = [
        _tagged(item, document["host_tag"]) if tag else item
        for document in documents
        for item in document.get(name, [])
    ]
    return _sorted_unique(items, fields)


def _merged_inert_summary(documents: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    # Two hosts may hold a bench dir of the same relative path with different findings:
    # keep every distinct finding, sorted, joined by " | ".
    parts: dict[str, set[str]] = {}
    for document in documents:
        for bench_dir, summary in document["inert_summary"].items():
            parts.setdefault(bench_dir, set()).update(summary.split(" | "))
    return {bench_dir: " | ".join(sorted(parts[bench_dir])) for bench_dir in sorted(parts)}


def _merged_grid(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The coverage grids side by side: the union of columns, each row padded with '.'."""
    grids = [document["coverage_grid"] for document in documents]
    columns = sorted(
        {column for grid in grids for column in grid["columns"]}, key=column_label_order
    )

    rows = []
    for document, grid in zip(documents, grids, strict=True):
        for row in grid["rows"]:
            states = dict(zip(grid["columns"], row["cells"], strict=True))
            padded = {**row, "cells": "".join(states.get(column, ".") for column in columns)}
            rows.append(_tagged(padded, document["host_tag"]))

    legends = sorted({_canonical(grid["legend"]): grid["legend"] for grid in grids}.items())
    return {
        "legend": legends[0][1],
        "columns": columns,
        "rows": _sorted_unique(rows, ("host_tag", "bench_dir")),
    }


def _counts(merged: Mapping[str, Any]) -> dict[str, Any]:
    bench_dirs = merged["bench_dirs"]
    counted = sum(1 for summary in bench_dirs if summary["counted"])
    excluded = merged["excluded"]
    return {
        "bench_dirs_counted": counted,
        "bench_dirs_excluded": len(bench_dirs) - counted,
        "results_seen": sum(summary["results"] for summary in bench_dirs),
        "results_excluded": sum(1 for entry in excluded if entry["scope"] == "result"),
        "superseded_runs": len(merged["superseded_runs"]),
        "missing_runs": len(merged["missing_runs"]),
        "unplanned_runs": len(merged["unplanned_runs"]),
        "inert_factor_findings": len(merged["inert_factors"]),
        "excluded_by_code": dict(sorted(Counter(entry["code"] for entry in excluded).items())),
        "conflicts": len(merged["conflicts"]),
        "merged_files": len(merged["merged_from"]),
    }


def _merge_notes(
    documents: Sequence[Mapping[str, Any]],
    merged_from: Sequence[Mapping[str, Any]],
    mappings: Sequence[Any],
) -> list[str]:
    # Notes are derived from merged_from, so that merging in steps gives the same notes;
    # only the mapping note cannot be, and is carried over from merged inputs.
    notes = [
        note
        for field, note in (("inputs", NOTE_INPUTS_DIFFER), ("parameters", NOTE_PARAMETERS_DIFFER))
        if len({_canonical(entry.get(field)) for entry in merged_from}) > 1
    ]
    carried = any(NOTE_MAPPING_DIFFERS in d.get("merge_notes", []) for d in documents)
    if carried or len(mappings) > 1:
        notes.append(NOTE_MAPPING_DIFFERS)
    per_host = Counter(entry["host_tag"] for entry in merged_from)
    notes.extend(
        f"host {host} contributes {per_host[host]} truth files; their runs are merged like "
        "any other's"
        for host in sorted(per_host)
        if per_host[host] > 1
    )
    return notes


def merge_truth_documents(
    documents: Sequence[Mapping[str, Any]],
    digests: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Merge the truth documents of several hosts into one, without choosing between hosts.

    The result does not depend on the order of ``documents``; merging a document with
    itself, or merging a merged document again, changes nothing but ``generated_at``.

    - ``host_tag`` is ``"merged"``; ``merged_from`` lists each source file (host, time,
      sha256, and its own ``inputs``, ``parameters`` and ``claimed_table``) sorted by
      host and sha256. A merged input contributes the files it was merged from.
    - ``inputs``, ``parameters`` and ``claimed_table`` are those of the first
      ``merged_from`` entry; when the files differ in them, ``merge_notes`` says so (the
      schema's warnings only take audit reason codes, so the notes are a list of text).
    - Every run gets a ``host_tag`` (a run of a merged input keeps its own). Runs of the
      same key and seed with bit-identical rmse, mae, mse and r2 (null equal to null)
      are one run: the first by (host_tag, run_dir, result_index) is kept and nothing
      is listed. Runs that differ are a ``conflicts`` entry (key, seed and one run per
      distinct set of metrics) and that key and seed are left out of ``real_runs``.
    - The other lists are concatenated, sorted and stripped of exact duplicates; the
      entries of lists whose schema allows it get the ``host_tag`` of their file, the
      others (``excluded``, ``warnings``, ``missing_runs``, ``unplanned_runs``) stay as
      they are, so that the same finding on two hosts is listed once. Phantom and
      drifted rows stay each host's own verdict on its own claimed table.
    - Counts are recomputed from the merged lists, plus ``conflicts`` and ``merged_files``.

    Parameters
    ----------
    documents:
        Truth documents as :func:`load_truth` returns them, of one or more hosts.
    digests:
        The sha256 of each document's file; by default that of the document as
        :func:`write_truth` would write it, which is its file's sha256.

    Returns
    -------
    dict
        The merged truth document; it passes :func:`validate_truth`.

    Raises
    ------
    ParameterError
        When there is no document, or not one digest per document.
    TruthFileError
        When a document is of a schema version this benchtruth does not read.
    """
    if not documents:
        raise ParameterError("truthfulness_jsons", [], "at least one truth file")
    if digests is None:
        digests = [truth_digest(document) for document in documents]
    if len(digests) != len(documents):
        raise ParameterError("digests", len(digests), f"one per document ({len(documents)})")
    for index, document in enumerate(documents):
        check_schema_version(document, f"truth document {index + 1}")

    merged_from = _sorted_unique(
        (
            entry
            for document, digest in zip(documents, digests, strict=True)
            for entry in _source_entries(document, digest)
        ),
        ("host_tag", "sha256"),
    )

    def first(field: str) -> Any:
        # The first merged_from entry's; a foreign merged file's entries may lack the field.
        if field in merged_from[0]:
            return merged_from[0][field]
        return min((d[field] for d in documents), key=_canonical)

    by_text = {_canonical(d["metric_extraction_mapping"]): d for d in documents}
    mappings = [by_text[text]["metric_extraction_mapping"] for text in sorted(by_text)]
    real_runs, conflicts = _merge_runs(documents)

    merged: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "benchtruth", "version": __version__},
        "host_tag": MERGED_HOST_TAG,
        "generated_at": generation_time(),
        "merged_from": merged_from,
        "merge_notes": _merge_notes(documents, merged_from, mappings),
        "inputs": first("inputs"),
        "parameters": first("parameters"),
        "bench_dirs_count": 0,
        "real_run_count": len(real_runs),
        "unique_combinations": len({_run_key(run)[:-1] for run in real_runs}),
        "phantom_rows_count": 0,
        "drifted_rows_count": 0,
        "counts": {},
        "bench_dirs": _merged_list(
            documents, "bench_dirs", ("host_tag", "bench_list_line", "path"), tag=True
        ),
        "claimed_table": first("claimed_table"),
        "phantom_rows": _merged_list(documents, "phantom_rows", ("host_tag", "row"), tag=True),
        "drifted_rows": _merged_list(documents, "drifted_rows", ("host_tag", "row"), tag=True),
        "excluded": _merged_list(documents, "excluded", ("path", "item", "code"), tag=False),
        "superseded_runs": _merged_list(
            documents,
            "superseded_runs",
            (*KEY_FIELDS, "seed", "host_tag", "run_dir", "result_index"),
            tag=True,
        ),
        "warnings": _merged_list(documents, "warnings", ("path", "item", "code"), tag=False),
        "coverage": _merged_list(documents, "coverage", ("host_tag", "bench_dir"), tag=True),
        "missing_runs": _merged_list(
            documents, "missing_runs", ("bench_dir", "key", "seed"), tag=False
        ),
        "unplanned_runs": _merged_list(
            documents, "unplanned_runs", ("bench_dir", "key", "seed"), tag=False
        ),
        "inert_summary": _merged_inert_summary(documents),
        "inert_factors": _merged_list(
            documents, "inert_factors", ("host_tag", "bench_dir", "factor", "seed"), tag=True
        ),
        "inert_seeds": _merged_list(
            documents, "inert_seeds", ("host_tag", "bench_dir", "configuration"), tag=True
        ),
        "coverage_grid": _merged_grid(documents),
        "metric_extraction_mapping": mappings[0],
        "conflicts": conflicts,
        "real_runs": real_runs,
    }
    merged["bench_dirs_count"] = len(merged["bench_dirs"])
    merged["phantom_rows_count"] = len(merged["phantom_rows"])
    merged["drifted_rows_count"] = len(merged["drifted_rows"])
    merged["counts"] = _counts(merged)
    return merged


# --- what the notebook and the summary show -----------------------------------------------------


def merged_from_rows(merged: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per merged file: host, generation time, sha256."""
    return [
        {column: entry[column] for column in MERGED_FROM_COLUMNS} for entry in merged["merged_from"]
    ]


def conflict_rows(merged: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per run of every conflict: key, seed, host and the metrics that disagree."""
    return [
        {column: run.get(column) for column in CONFLICT_COLUMNS}
        for conflict in merged.get("conflicts", [])
        for run in conflict["runs"]
    ]


def count_rows(merged: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The headline counts of a merged document, in reading order."""
    counts = merged["counts"]
    return [
        {"what": what, "count": number}
        for what, number in (
            ("truth files merged", len(merged.get("merged_from", []))),
            ("real runs used", merged["real_run_count"]),
            ("unique combinations (table rows)", merged["unique_combinations"]),
            ("runs that disagree between hosts (key and seed)", len(merged.get("conflicts", []))),
            ("bench dirs", merged["bench_dirs_count"]),
            ("bench dirs excluded", counts["bench_dirs_excluded"]),
            ("real runs superseded by newer ones", counts["superseded_runs"]),
            ("excluded entries", len(merged["excluded"])),
            ("phantom claimed rows", merged["phantom_rows_count"]),
            ("drifted claimed rows", merged["drifted_rows_count"]),
        )
    ]


def render_merge_summary(merged: Mapping[str, Any]) -> str:
    """A short Markdown summary of a merged truth document: files, counts, conflicts, notes."""
    lines = [
        f"# Merged benchmark truthfulness ({len(merged['merged_from'])} truth files)",
        "",
        f"Generated at {merged['generated_at']} by benchtruth {merged['tool']['version']} "
        f"(schema {merged['schema_version']}). The tables built from this file use the runs "
        "of every host below; a run two hosts report with different metrics is a conflict "
        "and is left out of them.",
        "",
        "## Truth files merged",
        "",
    ]
    lines += md_table(
        MERGED_FROM_COLUMNS,
        [[row[column] for column in MERGED_FROM_COLUMNS] for row in merged_from_rows(merged)],
    )
    lines += ["", "## Counts", ""]
    lines += md_table(
        ["what", "count"], [[row["what"], row["count"]] for row in count_rows(merged)]
    )

    lines += ["", f"## Conflicts ({len(merged['conflicts'])})", ""]
    if merged["conflicts"]:
        lines.append("The same key and seed with different metrics on different hosts.")
        lines.append("")
        lines += md_table(
            CONFLICT_COLUMNS,
            [[row[column] for column in CONFLICT_COLUMNS] for row in conflict_rows(merged)],
        )
    else:
        lines.append("No run disagrees between hosts.")

    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in merged["merge_notes"]] or ["None."]
    return "\n".join(lines) + "\n"


# --- the merge step on files -------------------------------------------------------------------


def _path_list(name: str, value: object, allow_empty: bool) -> list[str]:
    # A bare string would be read letter by letter, and papermill would record a string
    # where the notebook echoes a list: refuse it.
    if value is None and allow_empty:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ParameterError(name, value, "a list of paths, such as ['a.json', 'b.json']")
    paths = [normalise_path_parameter(name, item) for item in value]
    if not paths and not allow_empty:
        raise ParameterError(name, value, "a list of at least one path")
    return paths


def merge_parameters(
    truthfulness_jsons: object,
    output_dir: object,
    executed_notebooks: object = (),
) -> dict[str, object]:
    """The 03 notebook's parameters, normalised: what :func:`merge_truth_files` will use.

    Raises
    ------
    ParameterError
        For a parameter the merge would refuse, before anything is written.
    """
    return {
        "truthfulness_jsons": _path_list("truthfulness_jsons", truthfulness_jsons, False),
        "output_dir": normalise_path_parameter("output_dir", output_dir),
        "executed_notebooks": _path_list("executed_notebooks", executed_notebooks, True),
    }


def _sha256_file(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as err:
        raise TruthFileError(os.path.basename(path), f"cannot be read ({err.strerror})") from err


def _warn_host_file_replaced(truth_path: str) -> None:
    """Say so when the merged file replaces a host's own truth file (not one being merged)."""
    previous_host = previous_host_tag(truth_path)
    if previous_host not in (None, MERGED_HOST_TAG):
        logger.warning(
            "replacing the truth file of host %s in this output_dir; give the merge its own "
            "output_dir to keep it",
            previous_host,
        )


def merge_truth_files(
    paths: Iterable[str],
    output_dir: str,
    executed_notebooks: Iterable[str] = (),
) -> dict[str, Any]:
    """Merge the truth files of several hosts into ``<output_dir>/benchmark_truthfulness.json``.

    Writes the merged truth file (validated against the schema), a short Markdown summary
    ``benchmark_truthfulness_merged.md`` and ``logs/benchmark_truthfulness_merged.log``.
    See :func:`merge_truth_documents` for what the merge keeps.

    Parameters
    ----------
    paths:
        The truth files, one per host (or merged files); order does not matter.
    output_dir:
        Where the merged truth file goes; it must not hold one of ``paths``.
    executed_notebooks:
        Executed notebooks (01, 02) that the truth files come with; each must pass
        :func:`check_executed_notebook`.

    Returns
    -------
    dict
        The merged truth document.

    Raises
    ------
    ParameterError
        For a bad parameter, or an ``output_dir`` whose truth file is one of the inputs.
    ExecutedNotebookError
        When an executed notebook is not evidence of a complete run.
    TruthFileError
        When a truth file cannot be loaded.
    """
    # Check everything first: a refusal leaves output_dir untouched.
    effective = merge_parameters(list(paths), output_dir, list(executed_notebooks))
    paths, output_dir = effective["truthfulness_jsons"], effective["output_dir"]
    check_output_dir(
        "output_dir", output_dir, files=(TRUTH_FILE, MERGED_REPORT_FILE, MERGED_LOG_FILE)
    )
    truth_path = os.path.join(output_dir, TRUTH_FILE)
    if any(os.path.realpath(path) == os.path.realpath(truth_path) for path in paths):
        raise ParameterError(
            "output_dir", output_dir, "a folder that does not hold one of the merged truth files"
        )

    problems = {
        path: found
        for path in effective["executed_notebooks"]
        if (found := check_executed_notebook(path))
    }
    if problems:
        raise ExecutedNotebookError(problems)

    with capture_audit_log() as log_lines:
        documents, digests = [], []
        for path in paths:
            digests.append(_sha256_file(path))
            documents.append(load_truth(path))
            logger.info("read %s of host %s", os.path.basename(path), documents[-1]["host_tag"])
        for path in effective["executed_notebooks"]:
            logger.info("executed notebook %s is evidence of a complete run", path)

        merged = merge_truth_documents(documents, digests)
        logger.info(
            "merged %d truth files: %d real runs over %d combinations",
            len(merged["merged_from"]),
            merged["real_run_count"],
            merged["unique_combinations"],
        )
        for conflict in merged["conflicts"]:
            key = "|".join(str(conflict["key"][field]) for field in KEY_FIELDS)
            hosts = ", ".join(run["host_tag"] for run in conflict["runs"])
            logger.warning(
                "conflict %s seed %s: hosts %s report different metrics; left out of real_runs",
                key,
                conflict["seed"],
                hosts,
            )
        for note in merged["merge_notes"]:
            logger.warning("note: %s", note)

        _warn_host_file_replaced(truth_path)
        write_truth(truth_path, merged)
        logger.info("wrote %s", TRUTH_FILE)
        atomic_write_text(
            os.path.join(output_dir, MERGED_REPORT_FILE), render_merge_summary(merged)
        )
        logger.info("wrote %s", MERGED_REPORT_FILE)

    atomic_write_text(os.path.join(output_dir, MERGED_LOG_FILE), "\n".join(log_lines) + "\n")
    return merged
