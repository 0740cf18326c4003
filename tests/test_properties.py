"""Property tests: arbitrary bytes, JSON values and YAML documents never escape the readers.

Every input ends as real runs or as findings with a reason code. The ``ci`` profile
(the default) runs 10,000 examples across these tests; ``HYPOTHESIS_PROFILE=long`` runs
ten times as many.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchtruth_utils.artifacts import YamlLoader, read_config, read_metrics, read_status_run
from benchtruth_utils.benchlist import read_bench_list
from benchtruth_utils.claimed import mark_claimed_rows, read_claimed_table
from benchtruth_utils.coverage import find_inert_factors, plan_from_config
from benchtruth_utils.findings import Reason, Scope
from benchtruth_utils.paths import lexical_relative
from benchtruth_utils.runs import records_from_dir
from benchtruth_utils.tables import efficiency_frame, main_results_frame, summarize_runs

settings.register_profile(
    "ci",
    max_examples=1700,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=17000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

RUN_DIR = "runs/benchmarks/main_20260101_000000"
FIELDS = [
    "model",
    "backbone",
    "fusion_type",
    "module_variant",
    "seed",
    "rmse",
    "mae",
    "mse",
    "r2",
    "train_time_sec",
    "max_cuda_mem_mb",
    "status",
    "use_edgar",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["success", "fail", "lstm", "concat", "base", "yes", "off", "NA"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
results = st.lists(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)) | json_values,
    max_size=5,
)
metrics_documents = st.fixed_dictionaries(
    {"status": st.sampled_from(["success", "fail"]) | json_scalars, "results": results},
    optional={
        "exp_name": json_scalars,
        "use_edgar": json_scalars,
        "timestamp": json_scalars,
    },
)

SCRATCH = tempfile.mkdtemp(prefix="benchtruth-properties-")
NO_RUNS = summarize_runs([])


def _write(name: str, data: bytes) -> str:
    path = os.path.join(SCRATCH, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def _assert_accounted(data: bytes) -> None:
    """Read ``data`` as metrics.json; every result must be a run or an excluded entry."""
    _write("dir/metrics.json", data)
    metrics = read_metrics(os.path.join(SCRATCH, "dir"))
    verdict = records_from_dir(
        RUN_DIR,
        metrics,
        read_status_run(os.path.join(SCRATCH, "none")),
        read_config(os.path.join(SCRATCH, "none")),
    )

    dir_level = [f for f in verdict.excluded if f.scope is Scope.BENCH_DIR]
    result_level = [f for f in verdict.excluded if f.scope is Scope.RESULT]
    assert all(isinstance(f.code, Reason) and f.path for f in verdict.excluded)
    if dir_level:
        assert len(dir_level) == 1 and not verdict.records and not result_level
    else:
        accounted = len(verdict.records) + len(result_level)
        assert accounted == len(metrics.value["results"])
        if verdict.records:
            runs = [record.to_dict() for record in verdict.records]
            assert len(main_results_frame(runs)) == len({r.key for r in verdict.records})
            assert len(efficiency_frame(runs)) == 2 * len({r.key for r in verdict.records})
            find_inert_factors(verdict.records)


@given(st.binary(max_size=300))
def test_metrics_arbitrary_bytes_become_runs_or_findings(data):
    _assert_accounted(data)


@given(json_values)
def test_metrics_arbitrary_json_values_become_runs_or_findings(value):
    _assert_accounted(json.dumps(value).encode())


@given(metrics_documents)
def test_metrics_shaped_documents_account_for_every_result(document):
    _assert_accounted(json.dumps(document).encode())


@given(st.binary(max_size=200) | json_values.map(lambda v: yaml.safe_dump(v).encode()))
def test_config_and_status_run_never_escape(data):
    _write("cfg/configs/resolved_config.yaml", data)
    _write("cfg/STATUS_RUN.json", data)
    directory = os.path.join(SCRATCH, "cfg")

    config = read_config(directory)
    status = read_status_run(directory)
    plan = plan_from_config(config)

    assert config.ok or config.reason is Reason.CONFIG_UNREADABLE
    assert status.ok or status.reason is Reason.STATUS_RUN_UNREADABLE
    assert plan.cells or plan.reason in (Reason.PLAN_NOT_DECLARED, Reason.PLAN_UNREADABLE)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_claimed_table_every_row_gets_a_status(data):
    path = _write("claimed/main_results.csv", data)

    claimed = read_claimed_table(path, "main_results.csv")

    if claimed.rows is None:
        assert [f.code for f in claimed.findings]
    else:
        marked = mark_claimed_rows(claimed.rows, NO_RUNS)
        assert len(marked.marked) == len(claimed.rows)
        assert set(marked.marked["truth_status"]) <= {"backed", "drifted", "phantom"}


@given(st.binary(max_size=200))
def test_bench_list_arbitrary_bytes_never_escape(data):
    path = _write("list/bench_dirs_all.txt", data)

    bench_list = read_bench_list(path, os.path.join(SCRATCH, "list"))

    assert bench_list.entries or bench_list.findings


@settings(max_examples=300, deadline=None)
@given(
    path=st.lists(st.sampled_from(["a", "b", "..", ".", "", "x y", "/"]), max_size=6),
    root=st.lists(st.sampled_from(["a", "b", "..", ".", "", "/"]), max_size=4),
)
def test_lexical_relative_answers_as_relpath_does(path, root):
    # The POSIX shortcut in lexical_relative against the general rule it replaces.
    path_text, root_text = "/".join(path) or ".", "/".join(root) or "."
    absolute_root = os.path.normpath(os.path.abspath(root_text))
    relative = os.path.relpath(os.path.normpath(os.path.abspath(path_text)), absolute_root)
    outside = relative == os.pardir or relative.startswith(os.pardir + os.sep)

    assert lexical_relative(path_text, root_text) == (None if outside else relative)


YAML_SCALAR_TEXTS = st.sampled_from(
    [
        "yes", "No", "on", "OFF", "true", "~", "null", "Null", "", "1e3", "1.5", ".inf",
        "-.Inf", ".nan", "0x1F", "0o17", "012", "1_000", "+12", "-0", "2001-12-14",
        "2001-12-14t21:59:43.10-05:00", '"quoted 3"', "'7'", "plain text", "<<", "=",
        "0b101", "1:20", "!!str 5", "3.", "-.5", "7", '"yes"', "'~'", "'7'",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "1", "no", "x y"]), YAML_SCALAR_TEXTS)))
def test_config_loader_remembering_tags_reads_as_the_stock_loader(pairs):
    # Each text twice, so that the second reading takes remembered tags.
    text = "".join(f"k{index}_{key}: {value}\n" for index, (key, value) in enumerate(pairs))
    stock = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for _ in range(2):
        try:
            expected = repr(yaml.load(text, Loader=stock))
        except yaml.YAMLError:
            expected = "refused"
        try:
            found = repr(yaml.load(text, Loader=YamlLoader))
        except yaml.YAMLError:
            found = "refused"
        assert found == expected


def test_config_loader_forgets_tags_past_its_limit():
    many = "".join(f"k{index}: v{index}\n" for index in range(YamlLoader._MAX_REMEMBERED_TAGS))
    yaml.load(many, Loader=YamlLoader)

    assert len(YamlLoader._remembered_tags) <= YamlLoader._MAX_REMEMBERED_TAGS


def test_config_loader_keeps_no_long_text_and_leaves_subclasses_their_resolvers():
    YamlLoader._remembered_tags.clear()
    yaml.load("long: " + "x" * 10_000 + "\n", Loader=YamlLoader)
    assert all(
        len(text) <= YamlLoader._MAX_REMEMBERED_LENGTH for text, _ in YamlLoader._remembered_tags
    )

    class NoneIsNull(YamlLoader):
        pass

    NoneIsNull.add_implicit_resolver("tag:yaml.org,2002:null", re.compile("^none$"), ["n"])
    for _ in range(2):
        assert yaml.load("v: none", Loader=YamlLoader) == {"v": "none"}
        assert yaml.load("v: none", Loader=NoneIsNull) == {"v": None}
