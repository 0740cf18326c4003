"""Coverage (planned vs real runs), inert factors, and drift, pinned on small trees."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.colors import ListedColormap

from benchtruth_utils import audit as audit_module
from benchtruth_utils import build_tables, figures, run_audit
from benchtruth_utils.artifacts import Parsed
from benchtruth_utils.benchlist import read_bench_list
from benchtruth_utils.coverage import coverage_grid, plan_from_config
from benchtruth_utils.figures import coverage_heatmap_png
from benchtruth_utils.findings import Reason
from benchtruth_utils.runs import newest_indices

STAMP = "20260101_000000"


def metric_values(backbone, fusion, variant, seed):
    """Distinct, exactly representable metrics for every configuration and seed."""
    base = {"lstm": 1.0, "tcn": 2.0, "gru": 3.0}[backbone]
    base += {"none": 0.0, "film": 0.25}[fusion] + {"base": 0.0, "nonstat": 0.125}[variant]
    base += seed * 0.5
    return {"rmse": base, "mae": base / 2, "mse": base * base, "r2": 1 - base / 10}


def write_tree(root, results, plan=None, claimed=None):
    """One bench dir under ``root`` with ``results`` and an optional plan and claimed table."""
    bench = root / "runs" / "benchmarks" / f"main_{STAMP}"
    (bench / "configs").mkdir(parents=True)
    config = {"exp_name": "main", "use_edgar": False, **(plan or {})}
    (bench / "configs" / "resolved_config.yaml").write_text(yaml.safe_dump(config))
    (bench / "STATUS_RUN.json").write_text(json.dumps({"status": "ok"}))
    document = {
        "exp_name": "main",
        "timestamp": STAMP,
        "status": "success",
        "use_edgar": False,
        "results": [{**result, "status": "success"} for result in results],
    }
    (bench / "metrics.json").write_text(json.dumps(document))

    stamp_dir = root / "runs" / "orchestrator" / "s1"
    stamp_dir.mkdir(parents=True)
    (stamp_dir / "bench_dirs_all.txt").write_text(f"runs/benchmarks/main_{STAMP}\n")
    if claimed is not None:
        (stamp_dir / "paper_tables").mkdir()
        (stamp_dir / "paper_tables" / "main_results.csv").write_text(claimed)
    return stamp_dir


def result(backbone, fusion="none", variant="base", seed=0, **metrics):
    values = metric_values(backbone, fusion, variant, seed)
    values.update(metrics)
    return {
        "backbone": backbone,
        "model": backbone,
        "fusion_type": fusion,
        "module_variant": variant,
        "seed": seed,
        **values,
    }


def audit(root, stamp_dir, tmp_path):
    out = tmp_path / "out"
    audited = run_audit(
        bench_list=str(stamp_dir / "bench_dirs_all.txt"),
        output_dir=str(out / "analysis"),
        paper_tables_dir=str(stamp_dir / "paper_tables"),
        project_root=str(root),
    )
    frames = build_tables(audited.truth_path, str(out / "paper_tables"))
    return audited.truth, frames


PLAN = {"models": ["lstm", "tcn"], "fusion_types": ["none"], "module_variants": ["base"]}


def test_a_clean_benchmark_has_no_finding_at_all(tmp_path):
    results = [result(b, seed=s) for b in ("lstm", "tcn") for s in (0, 1)]
    claimed = "exp_name,backbone,fusion_type,module_variant,use_edgar,rmse_mean,rmse_std,n_runs\n"
    claimed += "main,lstm,none,base,False,1.25,0.3535533905932738,2\n"
    claimed += "main,tcn,none,base,False,2.25,0.3535533905932738,2\n"
    stamp_dir = write_tree(tmp_path / "p", results, {**PLAN, "seeds": [0, 1]}, claimed)

    truth, frames = audit(tmp_path / "p", stamp_dir, tmp_path)

    assert truth["claimed_table"]["status_counts"] == {"backed": 2, "drifted": 0, "phantom": 0}
    for field in ("excluded", "superseded_runs", "warnings", "phantom_rows", "drifted_rows"):
        assert truth[field] == [], field
    for field in ("missing_runs", "unplanned_runs", "inert_factors", "inert_seeds"):
        assert truth[field] == [], field
    assert truth["inert_summary"] == {}
    assert truth["coverage"][0]["planned"] == truth["coverage"][0]["real"] == 4
    assert truth["coverage_grid"]["rows"] == [
        {"bench_dir": f"runs/benchmarks/main_{STAMP}", "cells": "RRRR"}
    ]
    assert list(frames["main_results.csv"]["note"]) == ["", ""]


def test_missing_and_unplanned_runs_are_listed_exactly(tmp_path):
    results = [result("lstm", seed=0), result("lstm", seed=1), result("tcn"), result("gru")]
    stamp_dir = write_tree(tmp_path / "p", results, {**PLAN, "seeds": [0, 1]})

    truth, _ = audit(tmp_path / "p", stamp_dir, tmp_path)

    key = {"exp_name": "main", "fusion_type": "none", "module_variant": "base", "use_edgar": False}
    bench_dir = f"runs/benchmarks/main_{STAMP}"
    assert truth["missing_runs"] == [
        {"bench_dir": bench_dir, "key": {**key, "backbone": "tcn"}, "seed": 1}
    ]
    assert truth["unplanned_runs"] == [
        {"bench_dir": bench_dir, "key": {**key, "backbone": "gru"}, "seed": 0}
    ]
    assert truth["coverage_grid"]["columns"] == [
        "gru/none/base/0",
        "lstm/none/base/0",
        "lstm/none/base/1",
        "tcn/none/base/0",
        "tcn/none/base/1",
    ]
    assert truth["coverage_grid"]["rows"][0]["cells"] == "RRRRM"


@pytest.mark.parametrize(
    ("config", "code", "detail"),
    [
        (Parsed(present=False), "plan_not_declared", "no configs/resolved_config.yaml"),
        (
            Parsed(value={"models": ["a"]}),
            "plan_not_declared",
            "the config has no 'fusion_types' list",
        ),
        (
            Parsed(value={**PLAN, "models": "lstm", "seeds": [0]}),
            "plan_unreadable",
            "'models' is not a non-empty list",
        ),
        (
            Parsed(value={**PLAN, "seeds": ["0"]}),
            "plan_unreadable",
            "'seeds' holds values that are not integers",
        ),
    ],
)
def test_plan_from_config_gives_a_reason_not_a_guess(config, code, detail):
    plan = plan_from_config(config)

    assert (plan.cells, plan.reason.value, plan.detail) == ((), code, detail)


def test_inert_fusion_type_is_named_with_its_groups(tmp_path):
    results = []
    for backbone in ("lstm", "tcn"):
        for seed in (0, 1):
            for fusion in ("none", "film"):
                # The fusion type changes nothing: same metrics as fusion "none".
                results.append(
                    result(
                        backbone, fusion, seed=seed, **metric_values(backbone, "none", "base", seed)
                    )
                )
    stamp_dir = write_tree(tmp_path / "p", results)

    truth, frames = audit(tmp_path / "p", stamp_dir, tmp_path)

    bench_dir = f"runs/benchmarks/main_{STAMP}"
    assert truth["inert_summary"] == {bench_dir: "no effect: fusion_type"}
    assert truth["inert_factors"] == [
        {
            "bench_dir": bench_dir,
            "exp_name": "main",
            "use_edgar": False,
            "seed": "all seeds",
            "factor": "fusion_type",
            "configurations": [
                [
                    {"backbone": "lstm", "fusion_type": "film", "module_variant": "base"},
                    {"backbone": "lstm", "fusion_type": "none", "module_variant": "base"},
                ],
                [
                    {"backbone": "tcn", "fusion_type": "film", "module_variant": "base"},
                    {"backbone": "tcn", "fusion_type": "none", "module_variant": "base"},
                ],
            ],
        }
    ]
    assert truth["inert_seeds"] == []
    notes = set(frames["main_results.csv"]["note"])
    assert notes == {"warning: fusion_type had no effect (bit-identical metrics)"}


def test_a_factor_inert_for_one_seed_only_names_that_seed(tmp_path):
    results = [
        result("lstm", seed=0),
        result("tcn", seed=0, **metric_values("lstm", "none", "base", 0)),
        result("lstm", seed=1),
        result("tcn", seed=1),
    ]
    stamp_dir = write_tree(tmp_path / "p", results)

    truth, _ = audit(tmp_path / "p", stamp_dir, tmp_path)

    assert [(f["factor"], f["seed"]) for f in truth["inert_factors"]] == [("backbone", 0)]


def test_identical_metrics_across_seeds_is_a_seed_finding(tmp_path):
    same = metric_values("lstm", "none", "base", 0)
    results = [
        result("lstm", seed=0),
        result("lstm", seed=1, **same),
        result("tcn", seed=0),
        result("tcn", seed=1),
    ]
    stamp_dir = write_tree(tmp_path / "p", results)

    truth, _ = audit(tmp_path / "p", stamp_dir, tmp_path)

    assert truth["inert_factors"] == []
    assert truth["inert_seeds"] == [
        {
            "bench_dir": f"runs/benchmarks/main_{STAMP}",
            "exp_name": "main",
            "use_edgar": False,
            "configuration": {"backbone": "lstm", "fusion_type": "none", "module_variant": "base"},
            "seeds": [0, 1],
            "finding": "bit-identical metrics across seeds: the seed was not used",
        }
    ]


def test_drift_lists_each_differing_cell_with_claimed_true_and_difference(tmp_path):
    results = [result("lstm", seed=0), result("lstm", seed=1)]
    claimed = "exp_name,backbone,fusion_type,module_variant,use_edgar,rmse_mean,mae_std,n_runs\n"
    claimed += "main,lstm,none,base,False,1.5,,3\n"
    stamp_dir = write_tree(tmp_path / "p", results, claimed=claimed)

    truth, _ = audit(tmp_path / "p", stamp_dir, tmp_path)

    [drifted] = truth["drifted_rows"]
    assert drifted["row"] == 1
    assert drifted["cells"] == [
        {"column": "rmse_mean", "claimed": "1.5", "true": 1.25, "difference": -0.25},
        {"column": "mae_std", "claimed": "", "true": 0.1767766952966369, "difference": None},
        {"column": "n_runs", "claimed": "3", "true": 2, "difference": -1.0},
    ]


def test_coverage_heatmap_of_nothing_is_a_labelled_empty_figure():
    from benchtruth_utils.coverage import GRID_LEGEND
    from benchtruth_utils.figures import coverage_matrix, plot_coverage_heatmap

    grid = {"legend": GRID_LEGEND, "columns": [], "rows": []}

    assert coverage_matrix(grid)[0].shape == (0, 0)
    figure = plot_coverage_heatmap(grid)
    assert [text.get_text() for text in figure.axes[0].texts] == [
        "Coverage: no planned or real runs to show"
    ]


def test_coverage_matrix_maps_letters_to_states():
    from benchtruth_utils.coverage import GRID_LEGEND
    from benchtruth_utils.figures import GRID_STATES, coverage_matrix

    grid = {
        "legend": GRID_LEGEND,
        "columns": ["a/x/b/0", "a/x/b/1", "c/x/b/0"],
        "rows": [{"bench_dir": "d1", "cells": "RSM"}, {"bench_dir": "d2", "cells": "X.R"}],
    }

    matrix, rows, columns = coverage_matrix(grid)
    assert rows == ["d1", "d2"]
    assert columns == grid["columns"]
    assert [[GRID_STATES[i] for i in row] for row in matrix.tolist()] == [
        ["R", "S", "M"],
        ["X", ".", "R"],
    ]


@pytest.mark.parametrize("text", ["\ud83d\ude00", "lone \udc80"])
def test_a_plan_naming_text_that_is_not_unicode_is_unreadable(text):
    # The pure-Python YAML loader (used for deeply nested configs) makes such strings from
    # escapes; written out, a surrogate pair would read back as one character.
    config = Parsed(
        value={
            "models": ["dlinear", text],
            "fusion_types": ["film"],
            "module_variants": ["base"],
            "seeds": [42],
        }
    )

    plan = plan_from_config(config)

    assert plan.reason is Reason.PLAN_UNREADABLE and plan.cells == ()


def test_the_heatmap_draws_labels_holding_lone_surrogates():
    grid = {
        "legend": {"R": "real"},
        "columns": ["a\ud800/b/c/1"],
        "rows": [{"bench_dir": "runs/benchmarks/x\udc80", "cells": "R"}],
    }

    assert coverage_heatmap_png(grid).startswith(b"\x89PNG")


CELLS = [
    (backbone, fusion, variant, seed)
    for backbone in ("lstm", "tcn")
    for fusion in ("none", "film")
    for variant in ("base", "nonstat")
    for seed in (1, 2)
]


def _factor(values):
    return st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True).map(sorted)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dirs=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),  # exp_name: two dirs of one name supersede
            st.tuples(
                _factor(["lstm", "tcn"]),
                _factor(["none", "film"]),
                _factor(["base", "nonstat"]),
                _factor([1, 2]),
            ),  # the planned matrix
            st.booleans(),  # whether the config declares it
            st.lists(st.tuples(st.sampled_from(CELLS), st.booleans()), max_size=2),  # more runs
            st.sampled_from([True, True, False]),  # whether every planned cell ran
        ),
        min_size=1,
        max_size=4,
    )
)
def test_complete_dirs_take_a_shortcut_to_the_grid_they_would_have(tmp_path_factory, dirs):
    root = tmp_path_factory.mktemp("grid")
    listed = []
    for number, (exp_name, factors, declares_plan, extra_runs, ran_plan) in enumerate(dirs):
        name = f"{exp_name}_2026010{number + 1}_000000"
        bench = root / "runs" / "benchmarks" / name
        (bench / "configs").mkdir(parents=True)
        config = {"exp_name": exp_name, "use_edgar": False}
        if declares_plan:
            names = ("models", "fusion_types", "module_variants", "seeds")
            config.update(zip(names, factors, strict=True))
        (bench / "configs" / "resolved_config.yaml").write_text(yaml.safe_dump(config))
        planned = [(*cell, True) for cell in itertools.product(*factors)] if ran_plan else []
        results = [
            {
                "backbone": cell[0],
                "fusion_type": cell[1],
                "module_variant": cell[2],
                "seed": cell[3],
                "status": "success" if ok else "failed",
                **metric_values(*cell[:4]),
            }
            for *cell, ok in [*planned, *((*cell, ok) for cell, ok in extra_runs)]
        ]
        document = {
            "exp_name": exp_name,
            "timestamp": name[-15:],
            "status": "success",
            "use_edgar": False,
            "results": results,
        }
        (bench / "metrics.json").write_text(json.dumps(document))
        (bench / "STATUS_RUN.json").write_text(json.dumps({"status": "ok"}))
        listed.append(f"runs/benchmarks/{name}")
    (root / "bench_dirs_all.txt").write_text("\n".join(listed) + "\n")

    bench_list = read_bench_list(str(root / "bench_dirs_all.txt"), str(root))
    run_logs = audit_module.index_run_logs(str(root / "logs"), str(root))
    with audit_module.spill_files(str(root / ".spill")):
        scan = audit_module.scan_bench_dirs(bench_list.entries, run_logs, str(root / ".spill"))
    kept_positions, superseded_pairs = newest_indices(scan.records)
    kept = [scan.records[position] for position in kept_positions]
    superseded = [scan.records[old] for old, _ in superseded_pairs]
    excluded = [finding.to_dict() for finding in scan.excluded]

    shortcut = coverage_grid(scan.bench_dirs, scan.plans, kept, superseded, excluded, scan.coverage)
    assert shortcut == coverage_grid(scan.bench_dirs, scan.plans, kept, superseded, excluded)


def test_heatmap_colours_are_the_colour_maps_bytes():
    # The heatmap is coloured before matplotlib sees it; the same bytes its colour map gives.
    expected = ListedColormap(figures.GRID_COLOURS)(range(len(figures.GRID_STATES)), bytes=True)
    assert np.array_equal(figures._STATE_RGBA, expected)
