"""Reason codes and the flat Finding record every stage reports with.

A finding is how the audit says "this was not counted" (or "this was counted, but
look here") without stopping. Codes are an Enum so that the report can group
them, tests can assert them and the README can document each one.
"""

from __future__ import annotations

import dataclasses
import enum

from .paths import safe_text


class Scope(enum.StrEnum):
    """What a finding is about: a whole bench dir, one result, or something else."""

    BENCH_LIST = "bench_list"
    BENCH_DIR = "bench_dir"
    RESULT = "result"
    CLAIMED_TABLE = "claimed_table"
    RUN_LOG = "run_log"


class Reason(enum.StrEnum):
    """Why something was left out (or, for warnings, why it deserves a look)."""

    # The bench list and its entries.
    BENCH_LIST_EMPTY = "bench_list_empty"
    BENCH_LIST_NOT_TEXT = "bench_list_not_text"
    BENCH_DIR_LISTED_AGAIN = "bench_dir_listed_again"
    BENCH_DIR_NOT_LISTED = "bench_dir_not_listed"
    BENCH_DIR_MISSING = "bench_dir_missing"
    BENCH_DIR_NOT_A_DIRECTORY = "bench_dir_not_a_directory"
    BENCH_DIR_OUTSIDE_ROOT = "bench_dir_outside_project_root"
    BENCH_DIR_UNREADABLE = "bench_dir_unreadable"

    # metrics.json, the file that holds the results.
    METRICS_MISSING = "metrics_missing"
    METRICS_UNREADABLE = "metrics_unreadable"
    METRICS_TOO_LARGE = "metrics_too_large"
    METRICS_EMPTY = "metrics_empty"
    METRICS_NOT_UTF8 = "metrics_not_utf8"
    METRICS_HAS_BOM = "metrics_has_bom"
    METRICS_INVALID_JSON = "metrics_invalid_json"
    METRICS_NOT_OBJECT = "metrics_not_object"
    METRICS_STATUS_MISSING = "metrics_status_missing"
    METRICS_STATUS_NOT_SUCCESS = "metrics_status_not_success"
    METRICS_RESULTS_MISSING = "metrics_results_missing"
    METRICS_RESULTS_NOT_LIST = "metrics_results_not_list"
    METRICS_NO_RESULTS = "metrics_no_results"
    EXP_NAME_UNREADABLE = "exp_name_unreadable"

    # STATUS_RUN.json, the runner's own verdict.
    STATUS_RUN_UNREADABLE = "status_run_unreadable"
    STATUS_RUN_NOT_OK = "status_run_not_ok"

    # resolved_config.yaml: only a fallback source, so unreadable is a warning.
    CONFIG_UNREADABLE = "config_unreadable"

    # The planned matrix in resolved_config.yaml, for coverage.
    PLAN_NOT_DECLARED = "plan_not_declared"
    PLAN_UNREADABLE = "plan_unreadable"

    # One result inside metrics.json.
    RESULT_NOT_OBJECT = "result_not_object"
    RESULT_STATUS_MISSING = "result_status_missing"
    RESULT_STATUS_NOT_SUCCESS = "result_status_not_success"
    KEY_FIELD_MISSING = "key_field_missing"
    KEY_FIELD_NOT_TEXT = "key_field_not_text"
    SEED_MISSING = "seed_missing"
    SEED_NOT_INTEGER = "seed_not_integer"
    METRIC_NOT_NUMBER = "metric_not_number"
    USE_EDGAR_MISSING = "use_edgar_missing"
    USE_EDGAR_UNREADABLE = "use_edgar_unreadable"

    # Counted runs that another run of the same key and seed replaces.
    SUPERSEDED_BY_NEWER = "superseded_by_newer_run"

    # Counted, with a value we could not use: listed as warnings.
    EFFICIENCY_VALUE_NOT_NUMBER = "efficiency_value_not_number"
    RUN_LOG_UNREADABLE = "run_log_unreadable"
    RUN_LOG_AMBIGUOUS = "run_log_ambiguous"

    # The claimed table.
    CLAIMED_TABLE_MISSING = "claimed_table_missing"
    CLAIMED_TABLE_WRITTEN_BY_BENCHTRUTH = "claimed_table_written_by_benchtruth"
    CLAIMED_TABLE_UNREADABLE = "claimed_table_unreadable"
    CLAIMED_KEY_COLUMNS_MISSING = "claimed_key_columns_missing"
    CLAIMED_TABLE_DUPLICATE_COLUMNS = "claimed_table_duplicate_columns"
    CLAIMED_TABLE_RAGGED_ROWS = "claimed_table_ragged_rows"
    CLAIMED_ROW_DUPLICATE = "claimed_row_duplicate"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing the audit saw: a reason code, the file it came from, and the details.

    ``path`` is always relative to the project root (or a bench list line such as
    ``runs/orchestrator/s1/bench_dirs_all.txt:4``); ``item`` locates the finding
    inside that file (``results[3]``), ``detail`` says what was found, and ``run``
    names the configuration and seed of an excluded result when they are readable.
    """

    code: Reason
    scope: Scope
    path: str
    detail: str
    item: str = ""
    run: str = ""

    def __post_init__(self) -> None:
        # Details quote input files (a runner's error message, a config value); what they
        # quote must not carry a local absolute path or bytes that are not UTF-8.
        for name in ("path", "detail", "item", "run"):
            object.__setattr__(self, name, safe_text(getattr(self, name)))

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code.value,
            "scope": self.scope.value,
            "path": self.path,
            "item": self.item,
            "run": self.run,
            "detail": self.detail,
        }
