"""The Markdown report: what a reader needs from the truth document, in reading order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .figures import COVERAGE_HEATMAP_FILE
from .runs import KEY_FIELDS, QUALITY_METRICS


def md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: pipes, backticks and newlines are escaped."""
    if value is None:
        return ""
    text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = [
        "| " + " | ".join(md_cell(header) for header in headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines.extend("| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in rows)
    return lines


def _key_cells(key: Mapping[str, Any] | None) -> list[Any]:
    if key is None:
        return [""] * len(KEY_FIELDS)
    return [key.get(field) for field in KEY_FIELDS]


def render_report(truth: Mapping[str, Any]) -> str:
    """Render the truth document as Markdown.

    Order: inputs, counts, what was excluded and why, phantom rows, drifted rows,
    superseded runs, coverage, inert factors, warnings, and where the tables will come from.
    """
    inputs = truth["inputs"]
    claimed = truth["claimed_table"]
    lines = [
        f"# Benchmark truthfulness audit, host {md_cell(truth['host_tag'])}",
        "",
        f"Generated at {md_cell(truth['generated_at'])} by benchtruth "
        f"{md_cell(truth['tool']['version'])} (schema {truth['schema_version']}).",
        "",
        "## Inputs",
        "",
    ]
    lines += md_table(
        ["input", "path (relative to the project root)", "sha256"],
        [
            ["bench list", inputs["bench_list"], inputs["bench_list_sha256"]],
            [
                "claimed table",
                inputs["claimed_table"]
                if claimed["present"]
                else f"{inputs['claimed_table']} (not found: nothing to compare)",
                inputs["claimed_table_sha256"] or "",
            ],
        ],
    )

    counts = truth["counts"]
    lines += ["", "## Counts", ""]
    lines += md_table(
        ["what", "count"],
        [
            ["bench dirs listed (distinct)", truth["bench_dirs_count"]],
            ["bench dirs counted", counts["bench_dirs_counted"]],
            ["bench dirs excluded", counts["bench_dirs_excluded"]],
            ["results seen in counted dirs", counts["results_seen"]],
            ["real runs used", truth["real_run_count"]],
            ["real runs superseded by newer ones", counts["superseded_runs"]],
            ["results excluded", counts["results_excluded"]],
            ["unique combinations (table rows)", truth["unique_combinations"]],
            ["claimed rows", claimed["rows"] if claimed["present"] else "no claimed table"],
            *[
                [f"claimed rows {status}", number]
                for status, number in claimed["status_counts"].items()
            ],
        ],
    )

    excluded = truth["excluded"]
    lines += ["", "## Excluded, and why", ""]
    if excluded:
        by_code = Counter(entry["code"] for entry in excluded)
        lines += md_table(["reason code", "entries"], sorted(by_code.items()))
        lines.append("")
        lines += md_table(
            ["reason code", "scope", "path", "item", "detail"],
            [
                [entry["code"], entry["scope"], entry["path"], entry["item"], entry["detail"]]
                for entry in excluded
            ],
        )
    else:
        lines.append("Nothing was excluded.")

    lines += ["", f"## Phantom rows ({truth['phantom_rows_count']})", ""]
    if truth["phantom_rows"]:
        lines.append("Rows of the claimed table that no real run backs, with their claimed values.")
        lines.append("")
        metric_columns = [f"{metric}_mean" for metric in QUALITY_METRICS] + ["n_runs"]
        lines += md_table(
            ["row", *KEY_FIELDS, *metric_columns, "reason"],
            [
                [
                    row["row"],
                    *[row["claimed"].get(field, "") for field in KEY_FIELDS],
                    *[row["claimed"].get(column, "") for column in metric_columns],
                    row["reason"],
                ]
                for row in truth["phantom_rows"]
            ],
        )
    else:
        lines.append("No phantom rows." if claimed["present"] else "No claimed table to check.")

    lines += ["", f"## Drifted rows ({truth['drifted_rows_count']})", ""]
    if truth["drifted_rows"]:
        lines.append(
            f"Backed rows whose claimed cells differ from the real runs (relative tolerance "
            f"{truth['parameters']['rel_tol']}, absolute {truth['parameters']['abs_tol']})."
        )
        lines.append("")
        lines += md_table(
            ["row", *KEY_FIELDS, "column", "claimed", "true", "difference"],
            [
                [
                    row["row"],
                    *_key_cells(row["key"]),
                    cell["column"],
                    cell["claimed"],
                    cell["true"],
                    cell["difference"],
                ]
                for row in truth["drifted_rows"]
                for cell in row["cells"]
            ],
        )
    else:
        lines.append("No drifted rows." if claimed["present"] else "No claimed table to check.")

    superseded = truth["superseded_runs"]
    lines += ["", f"## Superseded runs ({len(superseded)})", ""]
    if superseded:
        lines.append("Real runs replaced by a newer run of the same key and seed.")
        lines.append("")
        lines += md_table(
            [*KEY_FIELDS, "seed", "run", "superseded by"],
            [
                [
                    *_key_cells(run),
                    run["seed"],
                    f"{run['metrics_path']}:results[{run['result_index']}]",
                    run["superseded_by"],
                ]
                for run in superseded
            ],
        )
    else:
        lines.append("No run was superseded.")

    lines += _coverage_section(truth)
    lines += _inert_section(truth)

    warnings = truth["warnings"]
    lines += ["", f"## Warnings ({len(warnings)})", ""]
    if warnings:
        lines.append("Counted, but worth a look.")
        lines.append("")
        lines += md_table(
            ["reason code", "path", "item", "detail"],
            [[entry["code"], entry["path"], entry["item"], entry["detail"]] for entry in warnings],
        )
    else:
        lines.append("No warnings.")

    lines += [
        "",
        "## Where the tables will come from",
        "",
        f"`02_tables` builds `main_results.csv` and `efficiency.csv` from "
        f"`benchmark_truthfulness.json` alone: {truth['real_run_count']} real runs over "
        f"{truth['unique_combinations']} combinations, one table row each. It never reads the "
        "run folders, so every number in those tables traces back to a run listed there by "
        "`metrics_path` and `metrics_sha256`.",
        "",
    ]
    return "\n".join(lines)


def _coverage_section(truth: Mapping[str, Any]) -> list[str]:
    counts = truth["counts"]
    lines = [
        "",
        f"## Coverage ({counts['missing_runs']} missing, {counts['unplanned_runs']} unplanned)",
        "",
        f"![coverage heatmap]({COVERAGE_HEATMAP_FILE})",
        "",
        "Planned runs come from each counted dir's `configs/resolved_config.yaml`.",
        "",
    ]
    lines += md_table(
        ["bench dir", "planned", "real", "missing", "unplanned", "plan"],
        [
            [
                entry["bench_dir"],
                entry["planned"] if entry["plan"] else "",
                entry["real"],
                entry["missing"] if entry["plan"] else "",
                entry["unplanned"] if entry["plan"] else "",
                entry["plan"] or f"{entry['plan_code']}: {entry['plan_detail']}",
            ]
            for entry in truth["coverage"]
        ],
    )
    for title, runs in (("Missing", truth["missing_runs"]), ("Unplanned", truth["unplanned_runs"])):
        if runs:
            lines += ["", f"{title} runs:", ""]
            lines += md_table(
                ["bench dir", *KEY_FIELDS, "seed"],
                [[run["bench_dir"], *_key_cells(run["key"]), run["seed"]] for run in runs],
            )
    return lines


def _inert_section(truth: Mapping[str, Any]) -> list[str]:
    lines = ["", f"## Inert factors ({len(truth['inert_summary'])} bench dirs)", ""]
    if not truth["inert_factors"] and not truth["inert_seeds"]:
        return [*lines, "Every factor changed the metrics."]

    lines.append(
        "Configurations that claim to differ but report bit-identical metrics: a table "
        "built from them compares names, not models."
    )
    lines.append("")
    lines += md_table(["bench dir", "summary"], sorted(truth["inert_summary"].items()))
    lines.append("")
    lines += md_table(
        ["bench dir", "seed", "factor with no effect", "groups that collapse", "example group"],
        [
            [
                finding["bench_dir"],
                finding["seed"],
                finding["factor"],
                len(finding["configurations"]),
                ", ".join("/".join(c.values()) for c in finding["configurations"][0]),
            ]
            for finding in truth["inert_factors"]
        ],
    )
    if truth["inert_seeds"]:
        lines += ["", "Seeds that changed nothing:", ""]
        lines += md_table(
            ["bench dir", "configuration", "seeds"],
            [
                [f["bench_dir"], "/".join(f["configuration"].values()), f["seeds"]]
                for f in truth["inert_seeds"]
            ],
        )
    return lines
