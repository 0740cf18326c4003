"""Turning parsed artifacts into run records: which results are real runs, and which are not.

Pure functions over data: :mod:`benchtruth_utils.audit` reads the files and hands
their parsed content here.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .artifacts import CONFIG_FILE, METRICS_FILE, STATUS_RUN_FILE, Parsed
from .findings import Finding, Reason, Scope
from .paths import short_repr

KEY_FIELDS = ("exp_name", "backbone", "fusion_type", "module_variant", "use_edgar")
TEXT_KEY_FIELDS = ("backbone", "fusion_type", "module_variant")
QUALITY_METRICS = ("rmse", "mae", "mse", "r2")
EFFICIENCY_METRICS = ("train_time_sec", "max_cuda_mem_mb")
RUN_METRICS = QUALITY_METRICS + EFFICIENCY_METRICS

TRUE_SPELLINGS = frozenset({"true", "1", "yes", "on"})
FALSE_SPELLINGS = frozenset({"false", "0", "no", "off"})

_STAMP_SUFFIX = re.compile(r"_\d{8}_\d{6}$")

Key = tuple[str, str, str, str, bool]


class RunRecord(NamedTuple):
    """One real run: its key, seed, metrics, and where every value came from.

    A named tuple: a million of them are made, pickled between processes and kept,
    and a tuple is the cheapest record Python has for all three.
    """

    exp_name: str
    backbone: str
    fusion_type: str
    module_variant: str
    use_edgar: bool
    seed: int
    rmse: float | None
    mae: float | None
    mse: float | None
    r2: float | None
    train_time_sec: float | None
    max_cuda_mem_mb: float | None
    train_time_source: str | None
    nonfinite_metrics: tuple[str, ...]
    exp_name_source: str
    use_edgar_source: str
    run_dir: str
    metrics_path: str
    metrics_sha256: str
    result_index: int
    timestamp: str

    @property
    def key(self) -> Key:
        return (self.exp_name, self.backbone, self.fusion_type, self.module_variant, self.use_edgar)

    def to_dict(self) -> dict[str, Any]:
        record = dict(zip(RECORD_FIELDS, self, strict=True))
        record["nonfinite_metrics"] = list(self.nonfinite_metrics)
        return record


RECORD_FIELDS = RunRecord._fields

# A tuple of the fields made a RunRecord by a C call: RunRecord(...) and unpickling one are
# Python calls, and a million records are made and sent between processes.
as_run_record = functools.partial(tuple.__new__, RunRecord)

# RunRecord.key, and the key with the seed (the tuple runs are grouped and sorted by), as
# getters that make no Python call a record: a million records pass through them.
record_key = operator.itemgetter(*(RECORD_FIELDS.index(name) for name in KEY_FIELDS))
record_key_and_seed = operator.itemgetter(
    *(RECORD_FIELDS.index(name) for name in (*KEY_FIELDS, "seed"))
)


def parse_flag(value: Any) -> bool | None:
    """Read a yes/no value written as a bool, 0/1, or true/false, yes/no, on/off in any case.

    Returns None for anything else, which the caller reports instead of guessing.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    if isinstance(value, str):
        spelled = value.strip().lower()
        if spelled in TRUE_SPELLINGS:
            return True
        if spelled in FALSE_SPELLINGS:
            return False
    return None


def cell_label(result: Any) -> str:
    """``backbone/fusion_type/module_variant/seed`` of a result, as far as it can be read.

    Used to place an excluded result in the coverage grid; blank when it cannot be placed.
    """
    if not isinstance(result, dict):
        return ""
    parts = [result.get("backbone") or result.get("model"), result.get("fusion_type")]
    parts += [result.get("module_variant"), result.get("seed")]
    if not all(isinstance(part, (str, int)) and not isinstance(part, bool) for part in parts):
        return ""
    return "/".join(str(part) for part in parts)


def exp_name_from_dir(dir_name: str) -> str:
    """The experiment name a bench dir's name carries, without its ``_YYYYmmdd_HHMMSS`` stamp."""
    return _STAMP_SUFFIX.sub("", dir_name)


def _number(value: Any) -> tuple[float | None, str]:
    """Classify a metric value as (number, "") or (None, "missing" / "nonfinite" / "bad")."""
    if value is None:
        return None, "missing"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, "bad"
    try:
        number = float(value)
    except OverflowError:
        # An integer too large for a float: as non-finite as a float literal 1e400.
        return None, "nonfinite"
    if not math.isfinite(number):
        return None, "nonfinite"
    return number, ""


@dataclasses.dataclass
class DirVerdict:
    """Everything one bench dir contributed: real runs, exclusions and warnings."""

    records: list[RunRecord]
    excluded: list[Finding]
    warnings: list[Finding]
    results_count: int = 0
    timestamp: str = ""
    exp_name: str | None = None
    use_edgar: bool | None = None


def _dir_level_exclusion(
    run_dir: str,
    metrics: Parsed,
    status_run: Parsed,
) -> Finding | None:
    """The first reason, if any, why no result of this dir can count."""
    metrics_path = f"{run_dir}/{METRICS_FILE}"
    status_path = f"{run_dir}/{STATUS_RUN_FILE}"

    if status_run.present and status_run.reason is not None:
        return Finding(status_run.reason, Scope.BENCH_DIR, status_path, status_run.detail)
    if status_run.present:
        verdict = status_run.value.get("status")
        if verdict != "ok":
            errors = status_run.value.get("errors")
            detail = f"status is {short_repr(verdict)}, not 'ok'; errors: {short_repr(errors)}"
            return Finding(Reason.STATUS_RUN_NOT_OK, Scope.BENCH_DIR, status_path, detail)

    if metrics.reason is not None:
        return Finding(metrics.reason, Scope.BENCH_DIR, metrics_path, metrics.detail)

    document = metrics.value
    if "status" not in document:
        return Finding(
            Reason.METRICS_STATUS_MISSING, Scope.BENCH_DIR, metrics_path, "no top-level 'status'"
        )
    if document["status"] != "success":
        status, errors = short_repr(document["status"]), short_repr(document.get("errors"))
        detail = f"status is {status}, not 'success'; errors: {errors}"
        return Finding(Reason.METRICS_STATUS_NOT_SUCCESS, Scope.BENCH_DIR, metrics_path, detail)
    if "results" not in document:
        return Finding(
            Reason.METRICS_RESULTS_MISSING, Scope.BENCH_DIR, metrics_path, "no 'results' list"
        )
    if not isinstance(document["results"], list):
        found = type(document["results"]).__name__
        return Finding(
            Reason.METRICS_RESULTS_NOT_LIST,
            Scope.BENCH_DIR,
            metrics_path,
            f"'results' is {found}, not a list",
        )
    if not document["results"]:
        return Finding(
            Reason.METRICS_NO_RESULTS,
            Scope.BENCH_DIR,
            metrics_path,
            "status is 'success' but 'results' is empty",
        )
    return None


def _resolve_exp_name(
    run_dir: str,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any] | None,
) -> tuple[str | None, str, Finding | None]:
    """exp_name from metrics.json, else the config, else the dir name; bad values are refused."""
    candidates = [("metrics.json", metrics, f"{run_dir}/{METRICS_FILE}")]
    if config is not None:
        candidates.append(("resolved_config.yaml", config, f"{run_dir}/{CONFIG_FILE}"))

    for source, document, path in candidates:
        value = document.get("exp_name")
        if value is None:
            continue
        if isinstance(value, str) and value.strip() and is_unicode(value):
            return value, source, None
        detail = f"exp_name is {short_repr(value)}; expected non-empty text"
        return None, source, Finding(Reason.EXP_NAME_UNREADABLE, Scope.BENCH_DIR, path, detail)

    return exp_name_from_dir(run_dir.rsplit("/", 1)[-1]), "dir_name", None


def _resolve_use_edgar(
    result: Mapping[str, Any],
    metrics: Mapping[str, Any],
    config: Mapping[str, Any] | None,
) -> tuple[bool | None, str, str]:
    """use_edgar from the result, else metrics.json, else the config: (value, source, problem)."""
    sources = [("result", result), ("metrics.json", metrics)]
    if config is not None:
        sources.append(("resolved_config.yaml", config))

    for source, document in sources:
        value = document.get("use_edgar")
        if value is None:
            continue
        flag = parse_flag(value)
        if flag is None:
            return (
                None,
                source,
                f"use_edgar in {source} is {short_repr(value)}; not a yes/no spelling",
            )
        return flag, source, ""
    return None, "", "use_edgar is in neither the result, metrics.json nor resolved_config.yaml"


def _key_text(result: Mapping[str, Any], field: str) -> tuple[str | None, Reason | None, str]:
    """A key field as non-empty text, or the reason it is not one."""
    value = result.get(field)
    if field == "backbone" and (value is None or value == ""):
        value = result.get("model")
        field = "backbone (and model)"
    if value is None:
        return None, Reason.KEY_FIELD_MISSING, f"{field} is missing or null"
    if not isinstance(value, str):
        return None, Reason.KEY_FIELD_NOT_TEXT, f"{field} is {short_repr(value)}, not text"
    if not value.strip():
        return None, Reason.KEY_FIELD_MISSING, f"{field} is empty"
    if not is_unicode(value):
        return None, Reason.KEY_FIELD_NOT_TEXT, f"{field} holds a lone surrogate, not Unicode text"
    return value, None, ""


def is_unicode(text: str) -> bool:
    """False for text with a lone surrogate (a JSON ``\\ud800`` escape): not encodable."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _result_problem(
    result: Any, good_texts: dict[str, str]
) -> tuple[tuple[Reason, str] | None, list[str]]:
    """Why one result is not a run (status, key texts, seed), else None and its key texts.

    Key texts found good are kept in ``good_texts`` (interned), so that a dir's many
    results with the same backbone pay for one check and share one string.
    """
    if type(result) is not dict:
        return (Reason.RESULT_NOT_OBJECT, f"result is {type(result).__name__}, not an object"), []
    if result.get("status") is None:
        return (Reason.RESULT_STATUS_MISSING, "no 'status'"), []
    if result["status"] != "success":
        return (Reason.RESULT_STATUS_NOT_SUCCESS, f"status is {short_repr(result['status'])}"), []

    texts = []
    for field in TEXT_KEY_FIELDS:
        value = result.get(field)
        if field == "backbone" and (value is None or value == ""):
            value = result.get("model")
        if type(value) is str and value in good_texts:
            texts.append(good_texts[value])
            continue
        text, reason, detail = _key_text(result, field)
        if reason is not None:
            return (reason, detail), []
        texts.append(good_texts.setdefault(text, sys.intern(text)))

    seed = result.get("seed")
    if seed is None:
        return (Reason.SEED_MISSING, "seed is missing or null"), []
    if type(seed) is not int:
        return (Reason.SEED_NOT_INTEGER, f"seed is {short_repr(seed)}, not an integer"), []
    return None, texts


def _quality_metrics(result: dict) -> tuple[list[float | None], tuple[str, ...], str | None]:
    """The four quality metrics (None where missing or non-finite), the non-finite names,
    and the problem when one is not a number at all."""
    values: list[float | None] = list(map(result.get, QUALITY_METRICS))
    if tuple(map(type, values)) == _ALL_FLOATS and _finite_sum(values):
        # The common case, finite floats, without the general classification.
        return values, (), None

    values = []
    nonfinite: list[str] = []
    for name in QUALITY_METRICS:
        value = result.get(name)
        number, kind = _number(value)
        if kind == "bad":
            return values, (), f"{name} is {short_repr(value)}, not a number"
        if kind == "nonfinite":
            nonfinite.append(name)
        values.append(number)
    return values, tuple(nonfinite), None


_ALL_FLOATS = (float,) * len(QUALITY_METRICS)


def _finite_sum(values: Sequence[float]) -> bool:
    # Finite only if every value is; finite values whose sum overflows take the slow path,
    # which answers right.
    total = sum(values)
    return total - total == 0.0


# What a result without efficiency figures (the usual one) holds for them.
_NOT_LOGGED = [None] * len(EFFICIENCY_METRICS)


def records_from_dir(
    run_dir: str,
    metrics: Parsed,
    status_run: Parsed,
    config: Parsed,
    log_wall_seconds: float | None = None,
) -> DirVerdict:
    """Decide, result by result, which entries of one bench dir are real runs.

    Parameters
    ----------
    run_dir:
        The bench dir as the evidence shows it (relative to the project root).
    metrics, status_run, config:
        What :mod:`benchtruth_utils.artifacts` parsed from the dir's three files.
    log_wall_seconds:
        The dir's wall time from its run log, shared among its results when
        metrics.json carries no timing.

    Returns
    -------
    DirVerdict
        Real runs in result order, plus every exclusion and warning.
    """
    verdict = DirVerdict(records=[], excluded=[], warnings=[])
    metrics_path = f"{run_dir}/{METRICS_FILE}"

    if config.present and config.reason is not None:
        verdict.warnings.append(
            Finding(config.reason, Scope.BENCH_DIR, f"{run_dir}/{CONFIG_FILE}", config.detail)
        )
    config_values = config.value if config.ok else None

    exclusion = _dir_level_exclusion(run_dir, metrics, status_run)
    if exclusion is not None:
        verdict.excluded.append(exclusion)
        return verdict

    if metrics.bom:
        verdict.warnings.append(
            Finding(
                Reason.METRICS_HAS_BOM,
                Scope.BENCH_DIR,
                metrics_path,
                "starts with a UTF-8 byte order mark, which JSON does not allow; read without it",
            )
        )

    document = metrics.value
    exp_name, exp_name_source, refusal = _resolve_exp_name(run_dir, document, config_values)
    if refusal is not None:
        verdict.excluded.append(refusal)
        return verdict

    verdict.exp_name = exp_name
    verdict.use_edgar, _, _ = _resolve_use_edgar({}, document, config_values)

    results = document["results"]
    timestamp = document.get("timestamp")
    verdict.timestamp = sys.intern(timestamp) if isinstance(timestamp, str) else ""
    verdict.results_count = len(results)
    time_share = log_wall_seconds / len(results) if log_wall_seconds is not None else None
    # What the dir says of use_edgar, for the (usual) results that do not say it themselves.
    dir_use_edgar = _resolve_use_edgar({}, document, config_values)
    # Key texts repeat across a dir's results: each distinct one is checked once.
    good_texts: dict[str, str] = {}
    run_dir, metrics_path = sys.intern(run_dir), sys.intern(metrics_path)

    for index, result in enumerate(results):
        problem, key_texts = _result_problem(result, good_texts)
        if problem is not None:
            code, detail = problem
            item = f"results[{index}]"
            verdict.excluded.append(
                Finding(code, Scope.RESULT, metrics_path, detail, item, cell_label(result))
            )
            continue

        if result.get("use_edgar") is None:
            use_edgar, use_edgar_source, edgar_problem = dir_use_edgar
        else:
            use_edgar, use_edgar_source, edgar_problem = _resolve_use_edgar(
                result, document, config_values
            )
        if use_edgar is None:
            code = Reason.USE_EDGAR_UNREADABLE if use_edgar_source else Reason.USE_EDGAR_MISSING
            verdict.excluded.append(
                Finding(
                    code,
                    Scope.RESULT,
                    metrics_path,
                    edgar_problem,
                    f"results[{index}]",
                    cell_label(result),
                )
            )
            continue

        quality, nonfinite, bad_metric = _quality_metrics(result)
        if bad_metric is not None:
            verdict.excluded.append(
                Finding(
                    Reason.METRIC_NOT_NUMBER,
                    Scope.RESULT,
                    metrics_path,
                    bad_metric,
                    f"results[{index}]",
                    cell_label(result),
                )
            )
            continue

        efficiency = list(map(result.get, EFFICIENCY_METRICS))
        for position, name in enumerate(EFFICIENCY_METRICS if efficiency != _NOT_LOGGED else ()):
            if efficiency[position] is None:
                continue  # not logged: _number's answer
            number, kind = _number(efficiency[position])
            if kind == "bad":
                verdict.warnings.append(
                    Finding(
                        Reason.EFFICIENCY_VALUE_NOT_NUMBER,
                        Scope.RESULT,
                        metrics_path,
                        f"{name} is {short_repr(result.get(name))}; treated as not logged",
                        f"results[{index}]",
                    )
                )
            efficiency[position] = number
        train_time_sec, max_cuda_mem_mb = efficiency

        train_time_source = "metrics.json" if train_time_sec is not None else None
        if train_time_source is None and time_share is not None:
            train_time_sec, train_time_source = time_share, "run_log"

        verdict.records.append(
            as_run_record(
                (
                    exp_name,
                    *key_texts,
                    use_edgar,
                    result["seed"],
                    *quality,
                    train_time_sec,
                    max_cuda_mem_mb,
                    train_time_source,
                    nonfinite,
                    exp_name_source,
                    use_edgar_source,
                    run_dir,
                    metrics_path,
                    metrics.sha256,
                    index,
                    verdict.timestamp,
                )
            )
        )

    return verdict


@dataclasses.dataclass(frozen=True)
class Superseded:
    """A real run that a newer run of the same key and seed replaces."""

    record: RunRecord
    by_run_dir: str
    by_result_index: int

    def to_dict(self) -> dict[str, Any]:
        entry = self.record.to_dict()
        entry["code"] = Reason.SUPERSEDED_BY_NEWER.value
        entry["superseded_by"] = f"{self.by_run_dir}/{METRICS_FILE}:results[{self.by_result_index}]"
        return entry


def sortable_timestamp(stamp: str) -> str:
    """``YYYYmmddHHMMSS`` from the runner's ``20260101_000000`` or an ISO 8601 time.

    Blank when the text holds fewer than 14 digits: such a run sorts as the oldest.
    """
    digits = "".join(character for character in stamp if character.isdigit())
    return digits[:14] if len(digits) >= 14 else ""


def _newness(record: RunRecord) -> tuple[str, str, int]:
    return (sortable_timestamp(record.timestamp), record.run_dir, record.result_index)


class KeyRange(NamedTuple):
    """The keys and seeds of one dir's records sorted by them, as :class:`RunOrder` needs
    them: found in the worker that read the dir, so the audit need not look at each run."""

    first: tuple
    last: tuple
    # Strictly increasing: no key and seed twice in the dir.
    increasing: bool
    # Distinct keys, seeds apart.
    distinct_keys: int


def key_range(records: Sequence[RunRecord]) -> KeyRange | None:
    """The :class:`KeyRange` of ``records`` sorted by key and seed; None for no records."""
    if not records:
        return None
    keys = list(map(record_key_and_seed, records))
    return KeyRange(
        keys[0],
        keys[-1],
        all(map(operator.lt, keys, itertools.islice(keys, 1, None))),
        len(set(map(record_key, records))),
    )


class RunOrder:
    """Whether the runs of dirs gathered one after another have strictly increasing keys and
    seeds: then no run supersedes another and :func:`newest_indices` keeps them all as they
    come. The usual case: a bench list names its dirs in order, each with its own exp_name.

    Told each dir's :class:`KeyRange` in turn, it checks only where one dir meets the next.
    """

    def __init__(self) -> None:
        self.increasing = True
        # Distinct keys of all runs, seeds apart: only right while ``increasing``.
        self.distinct_keys = 0
        self._last: tuple | None = None

    def add(self, dir_range: KeyRange | None) -> None:
        if dir_range is None:
            return
        if self._last is not None:
            self.increasing = self.increasing and self._last < dir_range.first
            # Sorted, runs of one key lie together: a key that spans two dirs counts once.
            if self._last[:-1] == dir_range.first[:-1]:
                self.distinct_keys -= 1
        self.increasing = self.increasing and dir_range.increasing
        self.distinct_keys += dir_range.distinct_keys
        self._last = dir_range.last


def newest_indices(
    records: Sequence[RunRecord], in_order: bool = False
) -> tuple[list[int], list[tuple[int, int]]]:
    """Positions of the newest run of every (key, seed), sorted by key and seed, and of
    every other run paired with the position of the run that replaces it.

    Newest means the latest metrics.json ``timestamp``, then the later dir name, then
    the later position in ``results``. ``in_order`` says the caller knows the keys and
    seeds strictly increase (see :class:`RunOrder`): every run is then kept as it comes.
    """
    if in_order:
        return list(range(len(records))), []

    keys = list(map(record_key_and_seed, records))
    last_position = dict(zip(keys, range(len(keys)), strict=True))
    repeated: dict[tuple, list[int]] = {}
    if len(last_position) < len(keys):
        # Some key and seed ran more than once: only those need ordering by newness.
        counts = Counter(keys)
        for position, key in enumerate(keys):
            if counts[key] > 1:
                repeated.setdefault(key, []).append(position)

    ordered_keys = sorted(last_position)
    if not repeated:
        return list(map(last_position.__getitem__, ordered_keys)), []

    kept: list[int] = []
    superseded: list[tuple[int, int]] = []
    for group_key in ordered_keys:
        positions = repeated.get(group_key)
        if positions is None:
            kept.append(last_position[group_key])
            continue
        ordered = sorted(positions, key=lambda position: _newness(records[position]))
        newest = ordered[-1]
        kept.append(newest)
        superseded.extend((old, newest) for old in ordered[:-1])
    return kept, superseded


def select_newest(records: Sequence[RunRecord]) -> tuple[list[RunRecord], list[Superseded]]:
    """Keep the newest run of every (key, seed); list the others as superseded.

    See :func:`newest_indices`. Both lists come back sorted by key and seed.
    """
    kept, superseded = newest_indices(records)
    return [records[position] for position in kept], [
        Superseded(records[old], records[by].run_dir, records[by].result_index)
        for old, by in superseded
    ]
