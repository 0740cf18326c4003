"""Truth beyond existence: planned runs that never ran, and factors that change nothing.

Pure functions over run records and parsed configs. A bench dir's
``resolved_config.yaml`` declares its planned matrix (``models`` x ``fusion_types`` x
``module_variants`` x ``seeds``); a dir whose plan cannot be read gets a reason, not
a guess.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .artifacts import Parsed
from .findings import Reason
from .runs import QUALITY_METRICS, RunRecord, is_unicode

FACTORS = ("backbone", "fusion_type", "module_variant")
PLAN_KEYS = {
    "models": "backbone",
    "fusion_types": "fusion_type",
    "module_variants": "module_variant",
}
ALL_SEEDS = "all seeds"
MAX_PLANNED_RUNS = 100_000
ALL_CONFIGURATIONS_IDENTICAL = "all configurations identical per seed"

Config = tuple[str, str, str]
Cell = tuple[str, str, str, int]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A bench dir's planned matrix, or the reason it is unknown."""

    cells: tuple[Cell, ...] = ()
    reason: Reason | None = None
    detail: str = ""


def plan_from_config(config: Parsed) -> Plan:
    """Read the planned matrix from a parsed ``resolved_config.yaml``."""
    if not config.present:
        return Plan(reason=Reason.PLAN_NOT_DECLARED, detail="no configs/resolved_config.yaml")
    if not config.ok:
        return Plan(reason=Reason.PLAN_UNREADABLE, detail=f"config unreadable: {config.detail}")

    axes: list[list[Any]] = []
    for name in (*PLAN_KEYS, "seeds"):
        if name not in config.value:
            return Plan(reason=Reason.PLAN_NOT_DECLARED, detail=f"the config has no '{name}' list")
        values = config.value[name]
        wanted = "integers" if name == "seeds" else "text"
        if not isinstance(values, list) or not values:
            return Plan(reason=Reason.PLAN_UNREADABLE, detail=f"'{name}' is not a non-empty list")
        if name == "seeds":
            good = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        else:
            good = all(isinstance(v, str) and v.strip() and is_unicode(v) for v in values)
        if not good:
            return Plan(
                reason=Reason.PLAN_UNREADABLE, detail=f"'{name}' holds values that are not {wanted}"
            )
        axes.append(values)

    planned = math.prod(len(axis) for axis in axes)
    if planned > MAX_PLANNED_RUNS:
        # A 2 kB config can plan billions of runs; multiplying them out would exhaust memory.
        detail = f"plans {planned} runs, more than the {MAX_PLANNED_RUNS} a bench dir may plan"
        return Plan(reason=Reason.PLAN_UNREADABLE, detail=detail)
    return Plan(cells=tuple(itertools.product(*axes)))


_cell: Callable[[RunRecord], Cell] = operator.attrgetter(
    "backbone", "fusion_type", "module_variant", "seed"
)
_run_dir_of = operator.attrgetter("run_dir")


def compare_plan(
    run_dir: str,
    plan: Plan,
    records: Sequence[RunRecord],
    exp_name: str | None,
    use_edgar: bool | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Planned runs without a real run, and real runs that were not planned, for one dir.

    Returns the dir's coverage summary, its missing runs and its unplanned runs.
    """
    summary = {
        "bench_dir": run_dir,
        "plan": "resolved_config.yaml" if plan.reason is None else None,
        "plan_code": plan.reason.value if plan.reason is not None else None,
        "plan_detail": plan.detail,
        "planned": len(plan.cells),
        "real": len(records),
        "missing": 0,
        "unplanned": 0,
    }
    if plan.reason is not None:
        return summary, [], []

    planned = set(plan.cells)
    found = {_cell(record) for record in records}

    def entry(cell: Cell) -> dict[str, Any]:
        key = {"exp_name": exp_name, **dict(zip(FACTORS, cell[:3], strict=True))}
        key["use_edgar"] = use_edgar
        return {"bench_dir": run_dir, "key": key, "seed": cell[3]}

    missing = [entry(cell) for cell in plan.cells if cell not in found]
    unplanned = [
        {"bench_dir": run_dir, "key": _key_dict(record), "seed": record.seed}
        for record in sorted(records, key=_cell)
        if _cell(record) not in planned
    ]
    summary["missing"] = len(missing)
    summary["unplanned"] = len(unplanned)
    return summary, missing, unplanned


def _key_dict(record: RunRecord) -> dict[str, Any]:
    return {
        "exp_name": record.exp_name,
        "backbone": record.backbone,
        "fusion_type": record.fusion_type,
        "module_variant": record.module_variant,
        "use_edgar": record.use_edgar,
    }


# Bit-identical means equal floats; a missing value only equals another missing one.
_metrics_of = operator.attrgetter(*QUALITY_METRICS)


def _config_label(config: Config) -> dict[str, str]:
    return dict(zip(FACTORS, config, strict=True))


def _inert_groups(
    runs_by_config: Mapping[Config, RunRecord],
    factor: str,
) -> list[list[Config]] | None:
    """Groups of configurations differing only in ``factor`` with bit-identical metrics.

    None when some such group differs (the factor has an effect) or when no
    configuration has a sibling that differs only in ``factor``.
    """
    position = FACTORS.index(factor)
    siblings: dict[tuple, list[Config]] = {}
    for config in runs_by_config:
        rest = config[:position] + config[position + 1 :]
        siblings.setdefault(rest, []).append(config)

    groups = [sorted(configs) for configs in siblings.values() if len(configs) > 1]
    if not groups:
        return None
    for configs in groups:
        if len({_metrics_of(runs_by_config[config]) for config in configs}) > 1:
            return None
    return sorted(groups)


def find_inert_factors(records: Iterable[RunRecord]) -> tuple[list[dict], list[dict], dict]:
    """Factors that change nothing, seeds that change nothing, per bench dir.

    Within one bench dir and seed, a factor (backbone, fusion_type or module_variant)
    is inert when every set of configurations that differ only in it report
    bit-identical metrics. Returns the factor findings, the seed findings (the same
    configuration bit-identical across seeds) and a one-line summary per dir.
    """
    records = list(records)
    if len({_metrics_of(record) for record in records}) == len(records):
        # No two runs report the same metrics (a healthy benchmark): nothing can be inert.
        return [], [], {}

    by_dir: dict[str, dict[int, dict[Config, RunRecord]]] = {}
    for record in records:
        config = (record.backbone, record.fusion_type, record.module_variant)
        by_dir.setdefault(record.run_dir, {}).setdefault(record.seed, {})[config] = record

    factor_findings: list[dict] = []
    seed_findings: list[dict] = []
    summaries: dict[str, str] = {}
    for run_dir in sorted(by_dir):
        seeds = by_dir[run_dir]
        identity = next(iter(next(iter(seeds.values())).values()))
        where = {
            "bench_dir": run_dir,
            "exp_name": identity.exp_name,
            "use_edgar": identity.use_edgar,
        }

        inert_factors = []
        for factor in FACTORS:
            per_seed = {
                seed: _inert_groups(configs, factor) for seed, configs in sorted(seeds.items())
            }
            inert_seeds = [seed for seed, groups in per_seed.items() if groups is not None]
            if not inert_seeds:
                continue
            inert_factors.append(factor)
            if len(inert_seeds) == len(seeds):
                groups = per_seed[inert_seeds[0]]
                factor_findings.append(
                    {
                        **where,
                        "seed": ALL_SEEDS,
                        "factor": factor,
                        "configurations": _labels(groups),
                    }
                )
                continue
            factor_findings.extend(
                {**where, "seed": seed, "factor": factor, "configurations": _labels(per_seed[seed])}
                for seed in inert_seeds
            )

        seed_findings.extend(_seed_findings(where, seeds))
        summary = _dir_summary(seeds, inert_factors)
        if summary:
            summaries[run_dir] = summary

    return factor_findings, seed_findings, summaries


def _labels(groups: Sequence[Sequence[Config]]) -> list[list[dict[str, str]]]:
    return [[_config_label(config) for config in group] for group in groups]


def _seed_findings(where: Mapping[str, Any], seeds: Mapping[int, Mapping[Config, RunRecord]]):
    configs = sorted({config for by_config in seeds.values() for config in by_config})
    for config in configs:
        runs = [seeds[seed][config] for seed in sorted(seeds) if config in seeds[seed]]
        if len(runs) > 1 and len({_metrics_of(run) for run in runs}) == 1:
            yield {
                **where,
                "configuration": _config_label(config),
                "seeds": [run.seed for run in runs],
                "finding": "bit-identical metrics across seeds: the seed was not used",
            }


def _dir_summary(seeds: Mapping[int, Mapping[Config, RunRecord]], inert_factors: list[str]) -> str:
    all_identical = all(
        len(by_config) > 1 and len({_metrics_of(run) for run in by_config.values()}) == 1
        for by_config in seeds.values()
    )
    if all_identical:
        return ALL_CONFIGURATIONS_IDENTICAL
    if inert_factors:
        return "no effect: " + ", ".join(inert_factors)
    return ""


GRID_LEGEND = {
    "R": "real run",
    "S": "superseded by a newer run",
    "X": "excluded",
    "M": "planned, no run",
    ".": "not planned, no run",
}
_PRECEDENCE = "RSXM."


def _parse_label(label: str) -> Cell | None:
    parts = label.rsplit("/", 3)
    if len(parts) != 4:
        return None
    seed = int(parts[3]) if parts[3].lstrip("-").isdigit() else parts[3]
    return (parts[0], parts[1], parts[2], seed)


def _column_order(cell: tuple) -> tuple:
    seed = cell[3]
    return (*cell[:3], (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed)))


def column_label_order(label: str) -> tuple:
    """Sort key of a grid column label, in the order coverage_grid gives its columns."""
    cell = _parse_label(label)
    return (1, label) if cell is None else (0, *_column_order(cell), label)


def coverage_grid(
    bench_dirs: Sequence[Mapping[str, Any]],
    plans: Mapping[str, Plan],
    records: Iterable[RunRecord],
    superseded: Iterable[RunRecord],
    excluded: Iterable[Mapping[str, Any]],
    coverage: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Bench dirs by configuration and seed, one letter a cell (see ``GRID_LEGEND``).

    A planned cell of an excluded dir, and a cell of an excluded result, is ``X``;
    a planned cell with nothing else in it is ``M``. ``coverage`` (the dirs' summaries
    from :func:`compare_plan`) lets a dir whose runs were exactly its plan skip the cell
    by cell work: its row is ``R`` in each planned cell, whatever else is marked there.
    """
    superseded = list(superseded)
    complete = _complete_dirs(bench_dirs, plans, coverage, superseded)
    # A complete dir's row by its planned cells: dirs of one plan share one row text.
    complete_cells = {path: plans[path].cells for path in complete}
    states: dict[str, dict[tuple, str]] = {d["path"]: {} for d in bench_dirs}

    def mark(run_dir: str, cell: tuple, state: str) -> None:
        row = states.setdefault(run_dir, {})
        current = row.get(cell, ".")
        if _PRECEDENCE.index(state) < _PRECEDENCE.index(current):
            row[cell] = state

    for summary in bench_dirs:
        plan = plans.get(summary["path"])
        if plan is None or summary["path"] in complete:
            continue
        state = "M" if summary["counted"] else "X"
        row = states.setdefault(summary["path"], {})
        if not row:
            # The usual case, a dir met once: nothing to outrank (a million cells pass here).
            row.update(dict.fromkeys(plan.cells, state))
            continue
        for cell in plan.cells:
            mark(summary["path"], cell, state)
    for entry in excluded:
        cell = _parse_label(entry.get("run", ""))
        if cell is not None and entry["scope"] == "result":
            mark(entry["path"].rsplit("/", 1)[0], cell, "X")
    for record in superseded:
        mark(record.run_dir, _cell(record), "S")
    # "R" outranks every other state: set, not compared. A million runs pass here, a dir's
    # runs mostly one after another (sorted by key, whose first part is the dir's exp_name).
    for run_dir, runs in itertools.groupby(records, _run_dir_of):
        if run_dir not in complete:
            states.setdefault(run_dir, {}).update(dict.fromkeys(map(_cell, runs), "R"))

    plan_cells = dict.fromkeys(complete_cells.values())
    incomplete_rows = (row for path, row in states.items() if path not in complete)
    columns = sorted(set().union(*incomplete_rows, *plan_cells), key=_column_order)
    for cells in plan_cells:
        planned = set(cells)
        plan_cells[cells] = "".join("R" if column in planned else "." for column in columns)
    return {
        "legend": GRID_LEGEND,
        "columns": ["/".join(str(part) for part in cell) for cell in columns],
        "rows": [
            {
                "bench_dir": run_dir,
                "cells": (
                    plan_cells[complete_cells[run_dir]]
                    if run_dir in complete
                    else "".join(map(row.get, columns, itertools.repeat(".")))
                ),
            }
            for run_dir, row in states.items()
        ],
    }


def _complete_dirs(
    bench_dirs: Sequence[Mapping[str, Any]],
    plans: Mapping[str, Plan],
    coverage: Iterable[Mapping[str, Any]],
    superseded: Sequence[RunRecord],
) -> set[str]:
    """The counted dirs, each listed once, whose real runs are exactly their planned cells
    (none missing, none unplanned), with no result excluded and no run superseded: their
    rows are ``R`` in each planned cell and nothing elsewhere."""
    listed = Counter(summary["path"] for summary in bench_dirs)
    counted = {
        summary["path"]
        for summary in bench_dirs
        if summary["counted"] and summary["excluded_results"] == 0
    }
    touched = {record.run_dir for record in superseded}
    return {
        summary["bench_dir"]
        for summary in coverage
        if summary["plan"] is not None
        and summary["missing"] == 0
        and summary["unplanned"] == 0
        and summary["bench_dir"] in counted
        and listed[summary["bench_dir"]] == 1
        and summary["bench_dir"] not in touched
        and summary["bench_dir"] in plans
        and plans[summary["bench_dir"]].reason is None
    }
