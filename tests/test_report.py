"""The Markdown report: text from files cannot break its tables."""

from __future__ import annotations

from benchtruth_utils.report import md_cell, md_table


def test_md_cell_escapes_pipes_backticks_newlines_and_html():
    assert md_cell("a|b`c\nd\r\ne<f>") == "a\\|b\\`c d e&lt;f&gt;"
    assert md_cell(None) == ""
    assert md_cell(1.5) == "1.5"


def test_md_table_keeps_one_row_per_line_whatever_the_cells_hold():
    lines = md_table(["path", "detail"], [["x|y", "line one\nline two `code`"]])

    assert lines == [
        "| path | detail |",
        "|---|---|",
        "| x\\|y | line one line two \\`code\\` |",
    ]
