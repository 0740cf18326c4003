"""Reading metrics.json, STATUS_RUN.json, resolved_config.yaml and run logs."""

from __future__ import annotations

import hashlib
import json
import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchtruth_utils.artifacts import (
    _decode_json,
    _decode_json_stock,
    _on_fresh_stack,
    parse_run_log,
    read_config,
    read_metrics,
    read_regular_file,
    read_run_log,
    read_status_run,
)
from benchtruth_utils.findings import Reason


def _bench_dir(tmp_path, metrics=None, status=None, config=None):
    if metrics is not None:
        (tmp_path / "metrics.json").write_bytes(metrics)
    if status is not None:
        (tmp_path / "STATUS_RUN.json").write_bytes(status)
    if config is not None:
        (tmp_path / "configs").mkdir()
        (tmp_path / "configs" / "resolved_config.yaml").write_bytes(config)
    return str(tmp_path)


def test_read_metrics_accepts_bare_nan_and_infinity_tokens(tmp_path):
    payload = b'{"status": "success", "results": [{"r2": NaN, "mae": Infinity, "mse": -Infinity}]}'

    parsed = read_metrics(_bench_dir(tmp_path, metrics=payload))

    assert parsed.ok
    [result] = parsed.value["results"]
    assert math.isnan(result["r2"]) and result["mae"] == math.inf and result["mse"] == -math.inf
    assert parsed.sha256 == hashlib.sha256(payload).hexdigest()


def test_read_metrics_accepts_a_bom(tmp_path):
    parsed = read_metrics(_bench_dir(tmp_path, metrics=b'\xef\xbb\xbf{"status": "success"}'))

    assert (parsed.value, parsed.bom) == ({"status": "success"}, True)


@pytest.mark.parametrize(
    ("payload", "code", "detail"),
    [
        (b"", Reason.METRICS_EMPTY, "file is empty"),
        (b"  \n", Reason.METRICS_EMPTY, "file is empty"),
        (b'{"status": "succ', Reason.METRICS_INVALID_JSON, "not valid JSON"),
        (b'{"a": "\xff"}', Reason.METRICS_NOT_UTF8, "not UTF-8 text"),
        (b"[1, 2]", Reason.METRICS_NOT_OBJECT, "top level is list"),
        (b"null", Reason.METRICS_NOT_OBJECT, "top level is NoneType"),
    ],
)
def test_read_metrics_bad_files_become_findings(tmp_path, payload, code, detail):
    parsed = read_metrics(_bench_dir(tmp_path, metrics=payload))

    assert parsed.reason is code
    assert parsed.detail.startswith(detail)


def test_read_metrics_missing_file(tmp_path):
    parsed = read_metrics(str(tmp_path))

    assert (parsed.reason, parsed.present) == (Reason.METRICS_MISSING, False)


def test_read_metrics_a_directory_in_its_place_is_unreadable(tmp_path):
    (tmp_path / "metrics.json").mkdir()

    assert read_metrics(str(tmp_path)).reason is Reason.METRICS_UNREADABLE


def test_read_metrics_over_the_size_cap(tmp_path, monkeypatch):
    monkeypatch.setattr("benchtruth_utils.artifacts.MAX_ARTIFACT_BYTES", 10)

    parsed = read_metrics(_bench_dir(tmp_path, metrics=b'{"status": "success"}'))

    assert parsed.reason is Reason.METRICS_TOO_LARGE


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 300), limit=st.integers(1, 300), grows_by=st.integers(0, 50))
def test_read_regular_file_reads_at_most_the_limit_whatever_size_the_file_said(
    tmp_path_factory, size, limit, grows_by
):
    # Read with a buffer sized to what stat said: a file longer than that (one that grew
    # after stat, a /proc file saying 0) must still be read up to the limit.
    path = tmp_path_factory.mktemp("read") / "file"
    content = bytes(range(256)) * 2
    path.write_bytes(content[: size + grows_by])
    said = os.stat_result((*os.stat(path)[:6], size, *os.stat(path)[7:]))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("benchtruth_utils.artifacts.os.stat", lambda _: said)
        data = read_regular_file(str(path), limit)

    assert data == content[: min(size + grows_by, limit)]


def test_read_regular_file_reads_a_proc_file_that_says_it_is_empty():
    if not os.path.isfile("/proc/self/status"):
        pytest.skip("no /proc here")

    assert b"Name:" in read_regular_file("/proc/self/status", 1 << 20)


def test_read_status_run_absent_is_not_a_finding(tmp_path):
    parsed = read_status_run(str(tmp_path))

    assert (parsed.present, parsed.reason) == (False, None)


@pytest.mark.parametrize("payload", [b"{", b"[]", b"\xff"])
def test_read_status_run_malformed(tmp_path, payload):
    parsed = read_status_run(_bench_dir(tmp_path, status=payload))

    assert parsed.reason is Reason.STATUS_RUN_UNREADABLE


def test_read_config_uses_yaml_1_1_meanings(tmp_path):
    parsed = read_config(_bench_dir(tmp_path, config=b"exp_name: main\nuse_edgar: off\n"))

    assert parsed.value == {"exp_name": "main", "use_edgar": False}


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"exp_name: [unclosed\n", "not valid YAML at line"),
        (b"- a\n- b\n", "top level is list, not a mapping"),
        (b"", "top level is NoneType, not a mapping"),
        (b"a: !!python/object:os.system x\n", "not valid YAML"),
    ],
)
def test_read_config_malformed(tmp_path, payload, detail):
    parsed = read_config(_bench_dir(tmp_path, config=payload))

    assert parsed.reason is Reason.CONFIG_UNREADABLE
    assert parsed.detail.startswith(detail)


def test_parse_run_log_finds_output_dir_and_wall_time():
    text = (
        "running index=0 name=main\n"
        "2026-12-03 16:10:07,736 | INFO | Limit rows\n"
        "not a log line\n"
        "2026-12-03 16:10:46,334 | INFO | Output: runs/benchmarks/main_20261203_160959\n"
        "exit=0\n"
    )

    run_log = parse_run_log(text)

    assert run_log.output_dir == "runs/benchmarks/main_20261203_160959"
    assert run_log.wall_seconds == pytest.approx(38.598)


def test_parse_run_log_without_output_line_or_timestamps():
    assert parse_run_log("exit=2\n").output_dir is None
    assert parse_run_log("exit=2\n").wall_seconds is None
    assert parse_run_log("2026-13-45 99:00:00,000 | INFO | Output: x\n").output_dir is None


def test_read_run_log_on_a_real_log():
    from conftest import REALRUNS

    log = REALRUNS / "runs" / "orchestrator" / "20260129_073037" / "logs" / "run_0.log"

    parsed = read_run_log(str(log))

    assert parsed.value.output_dir == "runs/benchmarks/b11_v2_edgar_off_h14_sf0_20261203_160959"
    assert parsed.value.wall_seconds == pytest.approx(38.598)


def test_read_config_refuses_flow_nesting_the_c_loader_cannot_survive(tmp_path):
    deep = b"a: " + b"[" * 50000 + b"]" * 50000

    parsed = read_config(_bench_dir(tmp_path, config=deep))

    assert parsed.reason is Reason.CONFIG_UNREADABLE
    assert parsed.detail == "nested deeper than 1000 levels of brackets"


def test_read_metrics_integer_past_the_digit_limit_is_invalid_json(tmp_path):
    parsed = read_metrics(_bench_dir(tmp_path, metrics=b'{"n": 1' + b"0" * 4300 + b"}"))

    assert parsed.reason is Reason.METRICS_INVALID_JSON


# Documents on which orjson and json might part: long and huge integers, floats at the
# edges of the double range, NaN and Infinity tokens, escapes, lone surrogates, nesting.
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.sampled_from([-0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16]),
    st.text(),
    st.sampled_from(["\ud800", "\udfff\ud800", "\u2028", "\x00", "\ufeff"]),
)
JSON_DOCUMENTS = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
EDGE_TEXTS = [
    b"1e400",
    b"-1e400",
    b"1.7976931348623159e308",
    b"1.7976931348623158e308",
    b"123456789012345678",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"0.0000000000000000001",
    b"1" + b"0" * 5000,
    b"-0",
    b"-0.0",
    b"1E+2",
    b'{"a": 1, "a": 2}',
    b"\xef\xbb\xbf{}",
    b"[" * 2000 + b"]" * 2000,
    # Deeper than json reads, not deeper than orjson reads (a reviewer found these).
    *(b"[" * depth + b"]" * depth for depth in (900, 950, 990, 995, 1000, 1024, 1025)),
    b'{"pad": ' + b"[" * 1000 + b"]" * 1000 + b', "results": []}',
    b'"\\ud800"',
    b'"\xff"',
    b"NaN",
    b"[Infinity, -Infinity]",
    b" \t\r\n[]",
    b"\x0c[]",
]


def _same_verdict(data: bytes) -> None:
    # repr tells True from 1 from 1.0 and 0.0 from -0.0, and shows key order; == does not.
    fast, stock = _decode_json(data), _decode_json_stock(data)
    # A document nearly as deep as the recursion limit allows: compared on a fresh stack too.
    assert _on_fresh_stack(lambda: repr(fast) == repr(stock))


@settings(max_examples=500)
@given(
    JSON_DOCUMENTS,
    st.booleans(),
    st.sampled_from([None, 2]),
)
def test_json_reads_as_the_json_module_reads_it(value, ensure_ascii, indent):
    _same_verdict(
        json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode("utf-8", "surrogatepass")
    )


@settings(max_examples=500)
@given(st.binary(max_size=64) | st.sampled_from(EDGE_TEXTS))
def test_json_bytes_get_the_json_modules_verdict(data):
    _same_verdict(data)


def _from_deep_in_the_stack(calls: int, read):
    # The audit reads from a worker near the bottom of the stack, a notebook from far up.
    return read() if calls == 0 else _from_deep_in_the_stack(calls - 1, read)


@pytest.mark.parametrize("depth", [900, 940, 970, 990, 1000, 1100])
def test_deep_json_gets_one_verdict_wherever_it_is_read_from(tmp_path, depth):
    # A reviewer saw a metrics.json 950 levels deep counted by one worker count and
    # refused by another, and by the CLI's notebook.
    padding = b"[" * depth + b"]" * depth
    document = b'{"pad": ' + padding + b', "exp_name": "x", "results": []}'
    bench = _bench_dir(tmp_path, metrics=document, status=document)

    def verdicts():
        metrics, status = read_metrics(bench), read_status_run(bench)
        return (metrics.reason, metrics.detail, status.reason, status.detail)

    near_the_bottom = verdicts()
    for calls in (100, 400):
        assert _from_deep_in_the_stack(calls, verdicts) == near_the_bottom


@pytest.mark.parametrize("depth", [300, 600, 900, 1200])
def test_deep_yaml_gets_one_verdict_wherever_it_is_read_from(tmp_path, depth):
    # Deep block nesting goes to PyYAML's Python loader, which recurses with it.
    text = "".join(f"{'  ' * level}k{level}:\n" for level in range(depth)) + "  " * depth + "v"
    bench = _bench_dir(tmp_path, config=text.encode())

    def verdict():
        config = read_config(bench)
        return (config.reason, config.detail, config.sha256)

    near_the_bottom = verdict()
    for calls in (100, 400):
        assert _from_deep_in_the_stack(calls, verdict) == near_the_bottom
