"""The claimed table: read as text, matched by key, marked backed / drifted / phantom."""

from __future__ import annotations

import pytest

from benchtruth_utils.claimed import compare_cells, mark_claimed_rows, read_claimed_table
from benchtruth_utils.findings import Reason
from benchtruth_utils.tables import summarize_runs

HEADER = "exp_name,backbone,fusion_type,module_variant,use_edgar,rmse_mean,rmse_std,n_runs\n"


def run(seed, rmse, backbone="lstm", use_edgar=False):
    return {
        "exp_name": "main",
        "backbone": backbone,
        "fusion_type": "concat",
        "module_variant": "base",
        "use_edgar": use_edgar,
        "seed": seed,
        "rmse": rmse,
        "mae": None,
        "mse": None,
        "r2": None,
    }


def _table(tmp_path, text):
    path = tmp_path / "main_results.csv"
    path.write_text(text, newline="")
    return read_claimed_table(str(path), "paper_tables/main_results.csv")


def test_read_claimed_table_keeps_na_words_as_text(tmp_path):
    claimed = _table(tmp_path, HEADER + "main,NA,None,null,False,,nan,1\n")

    row = claimed.rows.iloc[0].to_dict()
    assert (row["backbone"], row["fusion_type"], row["module_variant"]) == ("NA", "None", "null")
    assert (row["rmse_mean"], row["rmse_std"]) == ("", "nan")


def test_read_claimed_table_bom_crlf_and_quoted_newline(tmp_path):
    claimed = _table(
        tmp_path, "\ufeff" + HEADER.replace("\n", "\r\n") + 'main,"ls\ntm",c,b,0,1,,1\r\n'
    )

    assert claimed.rows.columns[0] == "exp_name"
    assert claimed.rows.iloc[0]["backbone"] == "ls\ntm"


def test_read_claimed_table_missing_is_a_finding(tmp_path):
    claimed = read_claimed_table(str(tmp_path / "main_results.csv"), "t.csv")

    assert not claimed.present
    assert [f.code for f in claimed.findings] == [Reason.CLAIMED_TABLE_MISSING]


def test_read_claimed_table_without_key_columns(tmp_path):
    claimed = _table(tmp_path, "exp_name,rmse_mean\nmain,0.5\n")

    assert [f.code for f in claimed.findings] == [Reason.CLAIMED_KEY_COLUMNS_MISSING]
    marked = mark_claimed_rows(claimed.rows, summarize_runs([run(0, 0.5)]))
    assert marked.status_counts == {"backed": 0, "drifted": 0, "phantom": 1}


def test_read_claimed_table_ragged_rows_are_unreadable(tmp_path):
    claimed = _table(tmp_path, HEADER + "main,lstm,concat,base,False,1,2,3,4,5\n")

    assert claimed.rows is None
    [finding] = claimed.findings
    assert finding.code is Reason.CLAIMED_TABLE_RAGGED_ROWS
    assert finding.detail == "data rows 1 do not have 8 fields like the header"


def test_read_claimed_table_short_rows_are_not_padded(tmp_path):
    claimed = _table(tmp_path, HEADER + "main,lstm,concat,base,False,0.5,0.1,2\nmain,lstm\n")

    assert [f.code for f in claimed.findings] == [Reason.CLAIMED_TABLE_RAGGED_ROWS]


def test_read_claimed_table_duplicate_header_names(tmp_path):
    claimed = _table(tmp_path, "exp_name,backbone,backbone,fusion_type\nmain,a,b,c\n")

    assert claimed.rows is None
    assert claimed.findings[0].detail == "column names appear more than once: backbone"


def test_mark_claimed_rows_backed_drifted_phantom(tmp_path):
    truth = summarize_runs([run(0, 0.5), run(1, 0.7), run(0, 0.4, use_edgar=True)])
    claimed = _table(
        tmp_path,
        HEADER
        + "main,lstm,concat,base,False,0.6,0.14142135623730948,2\n"
        + "main,lstm,concat,base,TRUE,0.4,,1\n"
        + "main,lstm,concat,base,no,0.6,0.141421,2\n"
        + "main,tft,concat,base,False,0.6,0.1,2\n"
        + "main,lstm,concat,base,maybe,0.6,0.1,2\n",
    )

    marked = mark_claimed_rows(claimed.rows, truth)

    assert list(marked.marked["truth_status"]) == [
        "backed",
        "backed",
        "drifted",
        "phantom",
        "phantom",
    ]
    assert marked.marked["truth_reason"][0] == "real_runs_found: 2 runs"
    assert marked.marked["truth_reason"][2] == "values_differ: rmse_std"
    assert marked.marked["truth_reason"][3] == (
        "no_real_run: its exp_name has real runs, but none of this configuration"
    )
    assert marked.marked["truth_reason"][4].startswith("use_edgar_unreadable: use_edgar 'maybe'")
    [drifted] = marked.drifted_rows
    assert drifted["row"] == 3
    assert drifted["cells"][0]["column"] == "rmse_std"
    assert drifted["cells"][0]["claimed"] == "0.141421"
    assert drifted["cells"][0]["difference"] == pytest.approx(0.14142135623730948 - 0.141421)
    assert [row["row"] for row in marked.phantom_rows] == [4, 5]
    assert marked.phantom_rows[0]["claimed"]["rmse_mean"] == "0.6"


@pytest.mark.parametrize(
    ("claimed", "true", "differs"),
    [
        ({"rmse_mean": "1.0000001"}, {"rmse_mean": 1.0}, False),
        ({"rmse_mean": "1.00001"}, {"rmse_mean": 1.0}, True),
        ({"rmse_mean": "0"}, {"rmse_mean": 1e-10}, False),
        ({"rmse_mean": ""}, {"rmse_mean": 1.0}, True),
        ({"rmse_mean": "nan"}, {"rmse_mean": 1.0}, True),
        ({"rmse_mean": "1.0"}, {"rmse_mean": None}, True),
        ({"rmse_mean": ""}, {"rmse_mean": float("nan")}, False),
        ({"rmse_mean": "NaN"}, {"rmse_mean": None}, False),
        ({"rmse_mean": "abc"}, {"rmse_mean": 1.0}, True),
        ({"n_runs": "2.0"}, {"n_runs": 2}, False),
        ({"n_runs": "3"}, {"n_runs": 2}, True),
        ({"note": "anything"}, {}, False),
    ],
)
def test_compare_cells_tolerance_and_blanks(claimed, true, differs):
    assert bool(compare_cells(claimed, true)) is differs


def test_compare_cells_tolerance_is_a_parameter():
    assert compare_cells({"rmse_mean": "1.01"}, {"rmse_mean": 1.0}, rel_tol=0.1) == []


def test_mark_claimed_rows_reports_rows_claiming_the_same_key(tmp_path):
    truth = summarize_runs([run(0, 0.5)])
    claimed = _table(
        tmp_path,
        HEADER
        + "main,lstm,concat,base,False,0.5,,1\n"
        + "main,lstm,concat,base,no,0.5,,1\n"
        + "main,tcn,concat,base,False,0.5,,1\n",
    )

    marked = mark_claimed_rows(claimed.rows, truth)

    [finding] = marked.findings
    assert (finding.code, finding.item) == (Reason.CLAIMED_ROW_DUPLICATE, "row 1")
    assert finding.detail == "rows 1, 2 claim the same key main|lstm|concat|base|False"
