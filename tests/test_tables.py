"""main_results.csv and efficiency.csv, built from real runs only."""

from __future__ import annotations

import hashlib
import os

import pandas as pd
import pytest

from benchtruth_utils.errors import ParameterError
from benchtruth_utils.tables import (
    EFFICIENCY_COLUMNS,
    MAIN_RESULTS_COLUMNS,
    efficiency_frame,
    main_results_frame,
    write_tables,
)


def run(seed, rmse=0.5, backbone="lstm", use_edgar=False, **extra):
    record = {
        "exp_name": "main",
        "backbone": backbone,
        "fusion_type": "concat",
        "module_variant": "base",
        "use_edgar": use_edgar,
        "seed": seed,
        "rmse": rmse,
        "mae": 0.25,
        "mse": 0.25,
        "r2": 0.5,
        "train_time_sec": None,
        "max_cuda_mem_mb": None,
        "train_time_source": None,
    }
    record.update(extra)
    return record


def test_main_results_columns_order_and_sort():
    runs = [run(0, backbone="tcn", use_edgar=True), run(0), run(1, rmse=0.7), run(0, backbone="a")]

    frame = main_results_frame(runs)

    assert tuple(frame.columns) == MAIN_RESULTS_COLUMNS
    assert list(zip(frame["backbone"], frame["use_edgar"], strict=True)) == [
        ("a", False),
        ("lstm", False),
        ("tcn", True),
    ]
    lstm = frame.iloc[1]
    assert (lstm["n_runs"], lstm["rmse_mean"]) == (2, pytest.approx(0.6))
    assert lstm["rmse_std"] == pytest.approx(0.14142135623730948, rel=1e-15)
    assert frame.iloc[0]["rmse_std"] != frame.iloc[0]["rmse_std"]  # NaN: written blank


def test_main_results_note_names_metrics_short_of_values():
    frame = main_results_frame([run(0, rmse=None, r2=None), run(1, r2=None)])

    assert frame.iloc[0]["note"] == "rmse: 1 of 2 runs finite; r2: 0 of 2 runs finite"


def test_efficiency_notes_for_every_blank_and_estimate():
    runs = [
        run(0, train_time_sec=4.0, train_time_source="run_log", max_cuda_mem_mb=100.0),
        run(1, train_time_sec=6.0, train_time_source="metrics.json"),
        run(0, backbone="tcn"),
    ]

    frame = efficiency_frame(runs)

    assert tuple(frame.columns) == EFFICIENCY_COLUMNS
    rows = [
        (
            row["backbone"],
            row["metric_name"],
            None if pd.isna(row["metric_value"]) else row["metric_value"],
            row["note"],
        )
        for row in frame.to_dict(orient="records")
    ]
    assert rows == [
        ("lstm", "train_time_sec", 5.0, "estimated_from_run_log (1 of 2 runs)"),
        ("lstm", "max_cuda_mem_mb", 100.0, "cuda_mem_not_logged for 1 of 2 runs"),
        ("tcn", "train_time_sec", None, "timing_not_logged"),
        ("tcn", "max_cuda_mem_mb", None, "cuda_mem_not_logged"),
    ]


def test_write_tables_text_has_no_nan_and_bools_as_words(tmp_path):
    write_tables([run(0, r2=None), run(1, r2=None, use_edgar=True)], str(tmp_path))

    main = (tmp_path / "main_results.csv").read_text()
    assert (
        main.splitlines()[1]
        == "main,lstm,concat,base,False,0.5,0.25,0.25,,,,,,1,r2: 0 of 1 runs finite"
    )
    assert "nan" not in main.lower()
    efficiency = (tmp_path / "efficiency.csv").read_text()
    assert "nan" not in efficiency.lower()
    assert ",True,train_time_sec,,timing_not_logged" in efficiency


def test_write_tables_keeps_a_foreign_table_once_and_never_overwrites_a_kept_copy(tmp_path):
    (tmp_path / "main_results.csv").write_text("claimed v1\n")

    write_tables([run(0)], str(tmp_path))
    write_tables([run(0)], str(tmp_path))
    (tmp_path / "main_results.csv").write_text("claimed v2\n")
    write_tables([run(0)], str(tmp_path))

    kept = sorted(name for name in os.listdir(tmp_path) if ".kept_" in name)
    assert len(kept) == 2
    assert sorted((tmp_path / name).read_text() for name in kept) == [
        "claimed v1\n",
        "claimed v2\n",
    ]
    assert (tmp_path / "main_results.csv").read_text().startswith("exp_name,backbone")


def test_write_tables_never_replaces_a_foreign_table_without_a_copy_of_it(tmp_path):
    # Something already at the kept copy's name that is not the table's content made the
    # copy be skipped: the claimed table was replaced, the log said it was kept.
    claimed = "claimed v1\n"
    (tmp_path / "main_results.csv").write_text(claimed)
    kept_name = f"main_results.kept_{hashlib.sha256(claimed.encode()).hexdigest()[:12]}.csv"
    (tmp_path / kept_name).mkdir()

    with pytest.raises(ParameterError, match="is not a folder"):
        write_tables([run(0)], str(tmp_path))
    assert (tmp_path / "main_results.csv").read_text() == claimed

    (tmp_path / kept_name).rmdir()
    (tmp_path / kept_name).write_text("")
    write_tables([run(0)], str(tmp_path))

    assert (tmp_path / kept_name).read_text() == claimed
    assert (tmp_path / "main_results.csv").read_text().startswith("exp_name,backbone")


def test_write_tables_empty_runs_write_headers_only(tmp_path):
    frames = write_tables([], str(tmp_path))

    assert frames["main_results.csv"].empty
    assert (tmp_path / "main_results.csv").read_text() == ",".join(MAIN_RESULTS_COLUMNS) + "\n"


def test_write_tables_neutralises_formula_text_but_not_numbers(tmp_path):
    write_tables([run(0, backbone="=HYPERLINK(1)", rmse=-0.5)], str(tmp_path))

    line = (tmp_path / "main_results.csv").read_text().splitlines()[1]
    assert line.startswith("main,'=HYPERLINK(1),concat,base,False,-0.5,")
