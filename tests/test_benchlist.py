"""Reading the bench list: line handling, de-duplication and refusals."""

from __future__ import annotations

import os

import pytest

from benchtruth_utils.benchlist import parse_bench_list_text, read_bench_list
from benchtruth_utils.errors import BenchListError


def _make_dirs(root, *names):
    for name in names:
        (root / "runs" / "benchmarks" / name).mkdir(parents=True)


def test_parse_bench_list_text_skips_blanks_comments_bom_and_crlf():
    text = "\ufeff# header\r\nruns/a\r\n\r\n  runs/b  \r\n\t# indented comment\nruns/c"

    assert parse_bench_list_text(text) == [(2, "runs/a"), (4, "runs/b"), (6, "runs/c")]


def test_read_bench_list_resolves_relative_to_project_root(tmp_path):
    _make_dirs(tmp_path, "x_20260101_000000")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbfruns/benchmarks/x_20260101_000000\r\n")

    bench_list = read_bench_list(str(listing), str(tmp_path))

    assert bench_list.path == "list.txt"
    assert [entry.path for entry in bench_list.entries] == ["runs/benchmarks/x_20260101_000000"]
    assert bench_list.findings == []


def test_read_bench_list_counts_spellings_of_one_dir_once(tmp_path):
    _make_dirs(tmp_path, "a")
    os.symlink("a", tmp_path / "runs" / "benchmarks" / "latest")
    absolute = tmp_path / "runs" / "benchmarks" / "a"
    listing = tmp_path / "list.txt"
    listing.write_text(
        "runs/benchmarks/a\n./runs/benchmarks/a/\nruns/benchmarks/latest\n"
        f"{absolute}\nruns/x/../benchmarks/a\n"
    )

    bench_list = read_bench_list(str(listing), str(tmp_path))

    assert [entry.path for entry in bench_list.entries] == ["runs/benchmarks/a"]
    repeats = [(f.code.value, f.path) for f in bench_list.findings]
    assert repeats == [("bench_dir_listed_again", f"list.txt:{line}") for line in (2, 3, 4, 5)]
    assert all("same dir as line 1" in f.detail for f in bench_list.findings)


def test_read_bench_list_keeps_missing_dirs_for_the_audit_to_report(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("runs/benchmarks/gone\nruns/benchmarks/gone\n")

    bench_list = read_bench_list(str(listing), str(tmp_path))

    assert [entry.path for entry in bench_list.entries] == ["runs/benchmarks/gone"]
    assert [f.code.value for f in bench_list.findings] == ["bench_dir_listed_again"]


def test_read_bench_list_marks_entries_outside_the_root_without_showing_them(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    listing = root / "list.txt"
    listing.write_text(f"{tmp_path}/elsewhere\n../sibling\n")

    bench_list = read_bench_list(str(listing), str(root))

    assert [(e.path, e.inside_root) for e in bench_list.entries] == [
        ("list.txt:1", False),
        ("list.txt:2", False),
    ]


def test_read_bench_list_empty_is_a_finding(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# nothing yet\n\n")

    bench_list = read_bench_list(str(listing), str(tmp_path))

    assert bench_list.entries == []
    assert [f.code.value for f in bench_list.findings] == ["bench_list_empty"]


@pytest.mark.parametrize("payload", [b"\xff\xfe\x00r\x00u\x00n", b"runs/a\x00\x00\x01"])
def test_read_bench_list_binary_is_a_finding(tmp_path, payload):
    listing = tmp_path / "list.txt"
    listing.write_bytes(payload)

    bench_list = read_bench_list(str(listing), str(tmp_path))

    assert bench_list.entries == []
    assert [f.code.value for f in bench_list.findings] == ["bench_list_not_text"]


def test_read_bench_list_missing_file_is_refused(tmp_path):
    with pytest.raises(BenchListError, match=r"bench list nope\.txt: no such file"):
        read_bench_list(str(tmp_path / "nope.txt"), str(tmp_path))


def test_read_bench_list_directory_is_refused(tmp_path):
    with pytest.raises(BenchListError, match="is a directory"):
        read_bench_list(str(tmp_path), str(tmp_path))
