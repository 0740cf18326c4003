"""The claimed table: reading ``main_results.csv`` as text and marking each of its rows.

A row is ``backed`` when real runs carry its key and every claimed number agrees,
``drifted`` when real runs carry its key but a claimed number differs, and
``phantom`` when no real run carries its key at all.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from .artifacts import MAX_ARTIFACT_BYTES, read_regular_file
from .findings import Finding, Reason, Scope
from .paths import short_repr
from .runs import KEY_FIELDS, QUALITY_METRICS, parse_flag

logger = logging.getLogger(__name__)

STATUS_BACKED = "backed"
STATUS_DRIFTED = "drifted"
STATUS_PHANTOM = "phantom"

REASON_REAL_RUNS_FOUND = "real_runs_found"
REASON_VALUES_DIFFER = "values_differ"
REASON_NO_REAL_RUN = "no_real_run"
REASON_USE_EDGAR_UNREADABLE = "use_edgar_unreadable"
REASON_KEY_COLUMNS_MISSING = "key_columns_missing"

COMPARED_COLUMNS = (
    *(f"{metric}_mean" for metric in QUALITY_METRICS),
    *(f"{metric}_std" for metric in QUALITY_METRICS),
    "n_runs",
)
MISSING_WORDS = frozenset({"", "nan", "-nan", "+nan"})

DEFAULT_REL_TOL = 1e-6
DEFAULT_ABS_TOL = 1e-9


@dataclasses.dataclass
class ClaimedTable:
    """The claimed rows as text, exactly as the file holds them, and what was wrong with it."""

    path: str
    present: bool
    sha256: str | None = None
    rows: pd.DataFrame | None = None
    findings: list[Finding] = dataclasses.field(default_factory=list)


def read_claimed_table(path: str, shown: str) -> ClaimedTable:
    """Read the claimed table with every cell as text: ``NA``, ``None``, ``null`` stay words.

    Parameters
    ----------
    path:
        Where the process can open the table.
    shown:
        The table's path as the evidence shows it.
    """
    try:
        raw = read_regular_file(path, MAX_ARTIFACT_BYTES + 1)
    except FileNotFoundError:
        finding = Finding(Reason.CLAIMED_TABLE_MISSING, Scope.CLAIMED_TABLE, shown, "no such file")
        return ClaimedTable(shown, present=False, findings=[finding])
    except OSError as err:
        detail = f"cannot be read ({err.strerror or type(err).__name__})"
        finding = Finding(Reason.CLAIMED_TABLE_UNREADABLE, Scope.CLAIMED_TABLE, shown, detail)
        return ClaimedTable(shown, present=True, findings=[finding])

    digest = hashlib.sha256(raw).hexdigest()

    def refuse(code: Reason, detail: str) -> ClaimedTable:
        finding = Finding(code, Scope.CLAIMED_TABLE, shown, detail)
        return ClaimedTable(shown, present=True, sha256=digest, findings=[finding])

    if len(raw) > MAX_ARTIFACT_BYTES:
        return refuse(Reason.CLAIMED_TABLE_UNREADABLE, f"larger than {MAX_ARTIFACT_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return refuse(Reason.CLAIMED_TABLE_UNREADABLE, f"not UTF-8 text ({err.reason})")

    # The csv module, not pandas, splits the rows: pandas quietly turns surplus fields
    # into an index and pads short rows, which would shift claimed values into wrong columns.
    try:
        records = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as err:
        return refuse(Reason.CLAIMED_TABLE_UNREADABLE, f"not a readable CSV table ({err})")
    if not records:
        return refuse(Reason.CLAIMED_TABLE_UNREADABLE, "no header line")

    header, body = records[0], records[1:]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        detail = f"column names appear more than once: {', '.join(repeated)}"
        return refuse(Reason.CLAIMED_TABLE_DUPLICATE_COLUMNS, detail)
    ragged = [number for number, row in enumerate(body, start=1) if len(row) != len(header)]
    if ragged:
        shown_rows = ", ".join(str(number) for number in ragged[:10])
        more = f" and {len(ragged) - 10} more" if len(ragged) > 10 else ""
        detail = f"data rows {shown_rows}{more} do not have {len(header)} fields like the header"
        return refuse(Reason.CLAIMED_TABLE_RAGGED_ROWS, detail)
    rows = pd.DataFrame(body, columns=header, dtype=str)

    missing = [field for field in KEY_FIELDS if field not in header]
    findings = []
    if missing:
        findings.append(
            Finding(
                Reason.CLAIMED_KEY_COLUMNS_MISSING,
                Scope.CLAIMED_TABLE,
                shown,
                f"key columns missing: {', '.join(missing)}",
            )
        )
    logger.info("claimed table %s: %d rows", shown, len(rows))
    return ClaimedTable(shown, present=True, sha256=digest, rows=rows, findings=findings)


def _claimed_number(text: str) -> tuple[float | None, bool]:
    """(value, readable): blank and ``nan`` are a missing value, other non-numbers unreadable."""
    if text.strip().lower() in MISSING_WORDS:
        return None, True
    try:
        value = float(text)
    except ValueError:
        return None, False
    return (value if math.isfinite(value) else None), True


def _true_number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def compare_cells(
    claimed: Mapping[str, str],
    truth: Mapping[str, Any],
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
) -> list[dict[str, Any]]:
    """Every claimed cell that differs from the value recomputed from the real runs.

    Numbers are compared with ``math.isclose(rel_tol, abs_tol)``; a blank claimed
    cell where a true value exists, or the reverse, differs too. ``n_runs`` must match
    exactly.
    """
    differing = []
    for column in COMPARED_COLUMNS:
        if column not in claimed:
            continue
        text = claimed[column]
        claimed_value, readable = _claimed_number(text)
        true_value = _true_number(truth.get(column))

        if not readable:
            same = False
        elif claimed_value is None or true_value is None:
            same = claimed_value is None and true_value is None
        elif column == "n_runs":
            same = claimed_value == true_value
        else:
            same = math.isclose(claimed_value, true_value, rel_tol=rel_tol, abs_tol=abs_tol)

        if not same:
            if column == "n_runs" and true_value is not None:
                true_value = int(true_value)
            difference = (
                true_value - claimed_value
                if claimed_value is not None and true_value is not None
                else None
            )
            if difference is not None and not math.isfinite(difference):
                difference = None
            differing.append(
                {
                    "column": column,
                    "claimed": text,
                    "true": true_value,
                    "difference": difference,
                }
            )
    return differing


@dataclasses.dataclass
class MarkedTable:
    """The claimed rows with their verdicts, and the phantom and drifted rows in detail."""

    marked: pd.DataFrame
    phantom_rows: list[dict[str, Any]]
    drifted_rows: list[dict[str, Any]]
    status_counts: dict[str, int]
    findings: list[Finding] = dataclasses.field(default_factory=list)


def mark_claimed_rows(
    claimed_rows: pd.DataFrame,
    truth_summary: pd.DataFrame,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
) -> MarkedTable:
    """Give every claimed row a ``truth_status`` and a ``truth_reason``.

    Parameters
    ----------
    claimed_rows:
        The claimed table as text (see :func:`read_claimed_table`).
    truth_summary:
        One row per key with the recomputed means, stds and n_runs
        (:func:`benchtruth_utils.tables.summarize_runs`).
    """
    truth_by_key = {
        tuple(row[field] for field in KEY_FIELDS): row
        for row in truth_summary.to_dict(orient="records")
    }
    known_exp_names = {key[0] for key in truth_by_key}
    has_keys = all(field in claimed_rows.columns for field in KEY_FIELDS)

    statuses, reasons = [], []
    phantom_rows, drifted_rows = [], []
    for position, claimed in enumerate(claimed_rows.to_dict(orient="records"), start=1):
        status, reason, key, differing = _mark_row(
            claimed, has_keys, truth_by_key, known_exp_names, rel_tol, abs_tol
        )
        statuses.append(status)
        reasons.append(reason)

        claimed_text = {column: claimed[column] for column in claimed_rows.columns}
        if status == STATUS_PHANTOM:
            phantom_rows.append(
                {"row": position, "key": key, "reason": reason, "claimed": claimed_text}
            )
        elif status == STATUS_DRIFTED:
            drifted_rows.append({"row": position, "key": key, "cells": differing})

    findings = _duplicate_rows(claimed_rows) if has_keys else []
    marked = claimed_rows.copy()
    status_column, reason_column = _free_names(list(claimed_rows.columns))
    marked[status_column] = statuses
    marked[reason_column] = reasons
    counts = {
        status: statuses.count(status) for status in (STATUS_BACKED, STATUS_DRIFTED, STATUS_PHANTOM)
    }
    return MarkedTable(marked, phantom_rows, drifted_rows, counts, findings)


def _free_names(columns: list[str]) -> tuple[str, str]:
    """``truth_status`` and ``truth_reason``, or a suffixed pair when the claimed table has them.

    A claimed table marked by an earlier tool keeps its own columns untouched.
    """
    suffix = ""
    while f"truth_status{suffix}" in columns or f"truth_reason{suffix}" in columns:
        suffix = "_benchtruth" if not suffix else suffix + "_"
    return f"truth_status{suffix}", f"truth_reason{suffix}"


def _duplicate_rows(claimed_rows: pd.DataFrame) -> list[Finding]:
    """Rows that claim the same key twice: a paper table has one row per key."""
    first_row: dict[tuple, int] = {}
    repeats: dict[tuple, list[int]] = {}
    keys = claimed_rows[list(KEY_FIELDS)].itertuples(index=False, name=None)
    for position, key in enumerate(keys, start=1):
        flag = parse_flag(key[4])
        normalised = (*key[:4], key[4] if flag is None else flag)
        if normalised in first_row:
            repeats.setdefault(normalised, [first_row[normalised]]).append(position)
        else:
            first_row[normalised] = position

    return [
        Finding(
            Reason.CLAIMED_ROW_DUPLICATE,
            Scope.CLAIMED_TABLE,
            "",
            f"rows {', '.join(map(str, rows))} claim the same key {'|'.join(map(str, key))}",
            item=f"row {rows[0]}",
        )
        for key, rows in repeats.items()
    ]


def _mark_row(
    claimed: Mapping[str, str],
    has_keys: bool,
    truth_by_key: Mapping[tuple, Mapping[str, Any]],
    known_exp_names: set[str],
    rel_tol: float,
    abs_tol: float,
) -> tuple[str, str, dict[str, Any] | None, list[dict[str, Any]]]:
    if not has_keys:
        return (
            STATUS_PHANTOM,
            f"{REASON_KEY_COLUMNS_MISSING}: the table lacks key columns",
            None,
            [],
        )

    use_edgar = parse_flag(claimed["use_edgar"])
    key = {field: claimed[field] for field in KEY_FIELDS}
    if use_edgar is None:
        spelled = short_repr(claimed["use_edgar"])
        detail = f"use_edgar {spelled} is not a yes/no spelling; cannot be matched"
        return STATUS_PHANTOM, f"{REASON_USE_EDGAR_UNREADABLE}: {detail}", key, []

    key["use_edgar"] = use_edgar
    truth = truth_by_key.get(tuple(key[field] for field in KEY_FIELDS))
    if truth is None:
        why = (
            "its exp_name has real runs, but none of this configuration"
            if key["exp_name"] in known_exp_names
            else "no real run of this exp_name at all"
        )
        return STATUS_PHANTOM, f"{REASON_NO_REAL_RUN}: {why}", key, []

    differing = compare_cells(claimed, truth, rel_tol, abs_tol)
    if differing:
        columns = ", ".join(cell["column"] for cell in differing)
        return STATUS_DRIFTED, f"{REASON_VALUES_DIFFER}: {columns}", key, differing
    return STATUS_BACKED, f"{REASON_REAL_RUNS_FOUND}: {int(truth['n_runs'])} runs", key, []
