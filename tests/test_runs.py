"""Deciding real runs: the rules of the issue, one small input each."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchtruth_utils.artifacts import Parsed
from benchtruth_utils.findings import Reason
from benchtruth_utils.runs import (
    KEY_FIELDS,
    RECORD_FIELDS,
    RunOrder,
    RunRecord,
    exp_name_from_dir,
    key_range,
    newest_indices,
    parse_flag,
    record_key,
    record_key_and_seed,
    records_from_dir,
    select_newest,
)

RUN_DIR = "runs/benchmarks/main_20260101_000000"


def result(**changes):
    base = {
        "model": "lstm",
        "backbone": "lstm",
        "fusion_type": "concat",
        "module_variant": "base",
        "seed": 0,
        "rmse": 0.5,
        "mae": 0.25,
        "mse": 0.25,
        "r2": 0.5,
        "train_time_sec": None,
        "max_cuda_mem_mb": None,
        "status": "success",
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not ...}


def metrics(*results, **top):
    document = {
        "exp_name": "main",
        "timestamp": "20260101_000000",
        "status": "success",
        "errors": [],
        "use_edgar": False,
        "results": list(results),
    }
    document.update(top)
    return Parsed(value={k: v for k, v in document.items() if v is not ...}, sha256="0" * 64)


ABSENT = Parsed(present=False)


def decide(metrics_parsed, status_run=ABSENT, config=ABSENT, wall=None, run_dir=RUN_DIR):
    return records_from_dir(run_dir, metrics_parsed, status_run, config, wall)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("FALSE", False),
        (" Yes ", True),
        ("no", False),
        ("On", True),
        ("off", False),
        ("1", True),
        ("0", False),
        (2, None),
        (1.0, None),
        ("maybe", None),
        ("", None),
        ([], None),
    ],
)
def test_parse_flag_accepts_documented_spellings_only(value, expected):
    assert parse_flag(value) is expected


def test_exp_name_from_dir_strips_the_stamp_only():
    assert (
        exp_name_from_dir("b11_v2_edgar_off_h14_sf0_20261203_160959") == "b11_v2_edgar_off_h14_sf0"
    )
    assert exp_name_from_dir("main_2026_01") == "main_2026_01"


def test_records_from_dir_counts_a_plain_result():
    verdict = decide(metrics(result(), result(seed=1, rmse=0.7)))

    assert [(r.key, r.seed, r.rmse) for r in verdict.records] == [
        (("main", "lstm", "concat", "base", False), 0, 0.5),
        (("main", "lstm", "concat", "base", False), 1, 0.7),
    ]
    assert verdict.excluded == []
    record = verdict.records[0]
    assert (record.metrics_path, record.exp_name_source, record.use_edgar_source) == (
        f"{RUN_DIR}/metrics.json",
        "metrics.json",
        "metrics.json",
    )


def test_records_from_dir_exp_name_falls_back_to_config_then_dir_name():
    config = Parsed(value={"exp_name": "from_config"})

    from_config = decide(metrics(result(), exp_name=...), config=config).records[0]
    from_dir = decide(metrics(result(), exp_name=None)).records[0]

    assert (from_config.exp_name, from_config.exp_name_source) == (
        "from_config",
        "resolved_config.yaml",
    )
    assert (from_dir.exp_name, from_dir.exp_name_source) == ("main", "dir_name")


def test_records_from_dir_refuses_an_exp_name_that_is_not_text():
    verdict = decide(metrics(result(), exp_name=12))

    assert verdict.records == []
    [finding] = verdict.excluded
    assert (finding.code, finding.path) == (Reason.EXP_NAME_UNREADABLE, f"{RUN_DIR}/metrics.json")


def test_records_from_dir_use_edgar_from_result_then_metrics_then_config():
    config = Parsed(value={"use_edgar": "on"})

    verdict = decide(
        metrics(result(use_edgar="yes"), result(seed=1), use_edgar=...),
        config=config,
    )

    assert [(r.use_edgar, r.use_edgar_source) for r in verdict.records] == [
        (True, "result"),
        (True, "resolved_config.yaml"),
    ]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"use_edgar": "maybe"}, Reason.USE_EDGAR_UNREADABLE),
        ({"use_edgar": 2}, Reason.USE_EDGAR_UNREADABLE),
    ],
)
def test_records_from_dir_excludes_an_unreadable_use_edgar(bad, code):
    verdict = decide(metrics(result(**bad)))

    [finding] = verdict.excluded
    assert (finding.code, finding.item) == (code, "results[0]")
    assert repr(bad["use_edgar"]) in finding.detail


def test_records_from_dir_excludes_a_missing_use_edgar():
    verdict = decide(metrics(result(), use_edgar=...))

    assert [f.code for f in verdict.excluded] == [Reason.USE_EDGAR_MISSING]


@pytest.mark.parametrize(
    ("changes", "code", "detail"),
    [
        ({"fusion_type": None}, Reason.KEY_FIELD_MISSING, "fusion_type is missing or null"),
        ({"module_variant": ...}, Reason.KEY_FIELD_MISSING, "module_variant is missing or null"),
        ({"fusion_type": ""}, Reason.KEY_FIELD_MISSING, "fusion_type is empty"),
        ({"fusion_type": "  "}, Reason.KEY_FIELD_MISSING, "fusion_type is empty"),
        ({"fusion_type": 3}, Reason.KEY_FIELD_NOT_TEXT, "fusion_type is 3, not text"),
        ({"module_variant": ["a"]}, Reason.KEY_FIELD_NOT_TEXT, "module_variant is ['a'], not text"),
        (
            {"backbone": None, "model": None},
            Reason.KEY_FIELD_MISSING,
            "backbone (and model) is missing or null",
        ),
        ({"seed": ...}, Reason.SEED_MISSING, "seed is missing or null"),
        ({"seed": 1.0}, Reason.SEED_NOT_INTEGER, "seed is 1.0, not an integer"),
        ({"seed": True}, Reason.SEED_NOT_INTEGER, "seed is True, not an integer"),
        ({"seed": "42"}, Reason.SEED_NOT_INTEGER, "seed is '42', not an integer"),
        ({"status": "fail"}, Reason.RESULT_STATUS_NOT_SUCCESS, "status is 'fail'"),
        ({"status": ...}, Reason.RESULT_STATUS_MISSING, "no 'status'"),
        ({"rmse": "0.5"}, Reason.METRIC_NOT_NUMBER, "rmse is '0.5', not a number"),
        ({"r2": True}, Reason.METRIC_NOT_NUMBER, "r2 is True, not a number"),
        ({"mae": [0.1]}, Reason.METRIC_NOT_NUMBER, "mae is [0.1], not a number"),
    ],
)
def test_records_from_dir_excludes_a_bad_result_and_keeps_the_others(changes, code, detail):
    verdict = decide(metrics(result(**changes), result(seed=1)))

    [finding] = verdict.excluded
    assert (finding.code, finding.item, finding.detail) == (code, "results[0]", detail)
    assert [record.seed for record in verdict.records] == [1]


def test_records_from_dir_takes_backbone_from_model_when_blank():
    verdict = decide(metrics(result(backbone="", model="tcn")))

    assert verdict.records[0].backbone == "tcn"


def test_records_from_dir_excludes_a_result_that_is_not_an_object():
    verdict = decide(metrics(["lstm"], result()))

    assert [(f.code, f.item) for f in verdict.excluded] == [
        (Reason.RESULT_NOT_OBJECT, "results[0]")
    ]
    assert len(verdict.records) == 1


def test_records_from_dir_non_finite_metric_is_a_missing_value():
    verdict = decide(metrics(result(r2=math.nan, mae=-math.inf)))

    [record] = verdict.records
    assert (record.r2, record.mae, record.nonfinite_metrics) == (None, None, ("mae", "r2"))


@pytest.mark.parametrize(
    ("status_run", "metrics_parsed", "code"),
    [
        (
            Parsed(value={"status": "fail", "errors": ["x"]}),
            metrics(result()),
            Reason.STATUS_RUN_NOT_OK,
        ),
        (Parsed(value={}), metrics(result()), Reason.STATUS_RUN_NOT_OK),
        (
            Parsed(reason=Reason.STATUS_RUN_UNREADABLE, detail="bad"),
            metrics(result()),
            Reason.STATUS_RUN_UNREADABLE,
        ),
        (ABSENT, metrics(result(), status="fail"), Reason.METRICS_STATUS_NOT_SUCCESS),
        (ABSENT, metrics(result(), status=...), Reason.METRICS_STATUS_MISSING),
        (ABSENT, metrics(results=...), Reason.METRICS_RESULTS_MISSING),
        (ABSENT, metrics(results={"a": 1}), Reason.METRICS_RESULTS_NOT_LIST),
        (ABSENT, metrics(), Reason.METRICS_NO_RESULTS),
        (ABSENT, Parsed(reason=Reason.METRICS_MISSING, present=False), Reason.METRICS_MISSING),
    ],
)
def test_records_from_dir_dir_level_exclusions(status_run, metrics_parsed, code):
    verdict = decide(metrics_parsed, status_run=status_run)

    assert verdict.records == []
    assert [(f.code, f.scope.value) for f in verdict.excluded] == [(code, "bench_dir")]


def test_records_from_dir_status_run_ok_is_required_only_when_present():
    ok = Parsed(value={"status": "ok"})

    assert len(decide(metrics(result()), status_run=ok).records) == 1
    assert len(decide(metrics(result()), status_run=ABSENT).records) == 1


def test_records_from_dir_unreadable_config_is_a_warning_not_an_exclusion():
    config = Parsed(reason=Reason.CONFIG_UNREADABLE, detail="not valid YAML at line 2")

    verdict = decide(metrics(result()), config=config)

    assert len(verdict.records) == 1
    assert [f.code for f in verdict.warnings] == [Reason.CONFIG_UNREADABLE]


def test_records_from_dir_shares_the_log_wall_time_when_metrics_has_none():
    verdict = decide(metrics(result(), result(seed=1, train_time_sec=7.0)), wall=10.0)

    assert [(r.train_time_sec, r.train_time_source) for r in verdict.records] == [
        (5.0, "run_log"),
        (7.0, "metrics.json"),
    ]


def test_records_from_dir_efficiency_value_of_wrong_type_is_a_warning():
    verdict = decide(metrics(result(max_cuda_mem_mb="2GB")))

    assert verdict.records[0].max_cuda_mem_mb is None
    assert [f.code for f in verdict.warnings] == [Reason.EFFICIENCY_VALUE_NOT_NUMBER]


def test_select_newest_keeps_the_latest_timestamp_then_dir_name():
    older = decide(metrics(result(rmse=1.0), timestamp="20260101_000000"), run_dir="runs/b/z_old")
    newer = decide(metrics(result(rmse=2.0), timestamp="20260102_000000"), run_dir="runs/b/a_new")
    tie = decide(metrics(result(rmse=3.0), timestamp="20260102_000000"), run_dir="runs/b/b_tie")

    kept, superseded = select_newest([*older.records, *newer.records, *tie.records])

    assert [(r.run_dir, r.rmse) for r in kept] == [("runs/b/b_tie", 3.0)]
    assert [(s.record.run_dir, s.by_run_dir) for s in superseded] == [
        ("runs/b/z_old", "runs/b/b_tie"),
        ("runs/b/a_new", "runs/b/b_tie"),
    ]
    assert superseded[0].to_dict()["code"] == "superseded_by_newer_run"


def test_select_newest_keeps_distinct_seeds_and_keys():
    verdict = decide(metrics(result(), result(seed=1), result(backbone="tcn", model="tcn")))

    kept, superseded = select_newest(verdict.records)

    assert len(kept) == 3
    assert superseded == []


def test_records_from_dir_metrics_with_a_bom_is_read_and_noted():
    parsed = metrics(result())
    parsed.bom = True

    verdict = decide(parsed)

    assert len(verdict.records) == 1
    assert [f.code for f in verdict.warnings] == [Reason.METRICS_HAS_BOM]


def test_records_from_dir_an_integer_too_large_for_a_float_is_non_finite():
    verdict = decide(metrics(result(rmse=10**400, train_time_sec=10**400)))

    [record] = verdict.records
    assert (record.rmse, record.train_time_sec, record.nonfinite_metrics) == (None, None, ("rmse",))


def test_a_record_starts_with_its_key_and_seed():
    assert RECORD_FIELDS[: len(KEY_FIELDS) + 1] == (*KEY_FIELDS, "seed")


def test_the_key_getters_give_what_the_record_says():
    record = RunRecord(*range(len(RECORD_FIELDS)))

    assert record_key(record) == record.key
    assert record_key_and_seed(record) == (*record.key, record.seed)


@settings(max_examples=200, deadline=None)
@given(
    runs=st.lists(
        st.tuples(st.sampled_from(["lstm", "tcn"]), st.integers(0, 2), st.integers(0, 3)),
        max_size=12,
    ),
    presorted=st.booleans(),
)
def test_newest_indices_gives_the_same_answer_for_runs_in_any_order(runs, presorted):
    # Sorted runs with no key and seed twice (the usual case, kept as they come when the
    # audit's RunOrder says so) and runs in any order: the answer must not depend on the
    # order, here compared with the runs in reversed order.
    records = [
        record._replace(run_dir=f"runs/b/d{day}", timestamp=f"2026010{day}_000000", result_index=i)
        for i, (backbone, seed, day) in enumerate(runs)
        for record in decide(metrics(result(backbone=backbone, model=backbone, seed=seed))).records
    ]
    if presorted:
        records = sorted(
            {record_key_and_seed(r): r for r in records}.values(), key=record_key_and_seed
        )

    kept, superseded = newest_indices(records)
    reversed_kept, reversed_superseded = newest_indices(records[::-1])

    last = len(records) - 1
    assert [records[p] for p in kept] == [records[last - p] for p in reversed_kept]
    assert sorted((records[o], records[b]) for o, b in superseded) == sorted(
        (records[last - o], records[last - b]) for o, b in reversed_superseded
    )
    assert [record_key_and_seed(records[p]) for p in kept] == sorted(
        set(map(record_key_and_seed, records))
    )


@settings(max_examples=200, deadline=None)
@given(
    dirs=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b"]), st.sampled_from(["lstm", "tcn"]), st.integers(0, 2)
            ),
            max_size=5,
        ),
        max_size=5,
    )
)
def test_run_order_told_each_dirs_key_range_sees_what_the_runs_of_all_dirs_show(dirs):
    # RunOrder looks only where one dir meets the next; the runs of all dirs together must
    # bear it out: strictly increasing keys and seeds, and the distinct keys among them.
    order = RunOrder()
    all_records = []
    for runs in dirs:
        records = sorted(
            (
                record._replace(exp_name=exp_name)
                for exp_name, backbone, seed in runs
                for record in decide(
                    metrics(result(backbone=backbone, model=backbone, seed=seed))
                ).records
            ),
            key=record_key_and_seed,
        )
        order.add(key_range(records))
        all_records += records

    keys = list(map(record_key_and_seed, all_records))
    assert order.increasing == all(a < b for a, b in itertools.pairwise(keys))
    if order.increasing:
        assert order.distinct_keys == len(set(map(record_key, all_records)))
        assert newest_indices(all_records) == newest_indices(all_records, in_order=True)
