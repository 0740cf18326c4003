"""The reason-code corpus: one small fixture per reason code, audited end to end.

Every folder of ``tests/fixtures/corpus`` is a tiny project root in the runner's layout
(``runs/orchestrator/s1/bench_dirs_all.txt``, ``runs/benchmarks/<dir>/...``, optionally
``runs/orchestrator/s1/paper_tables/main_results.csv``), named by the behaviour it
triggers. Its ``corpus.json`` says what the audit must report:

- ``code``: the reason code (or, for ``where`` = ``refused``, the exception class);
- ``where``: ``excluded``, ``warnings``, ``superseded_runs``, ``coverage`` or ``refused``;
- ``path`` and ``item``: where the finding points, relative to the project root;
- ``real_run_count``: the real runs still counted beside the bad thing;
- ``note``: what is wrong, in one line;
- optional ``also`` (codes the defect necessarily brings along), ``max_artifact_bytes``
  (a lowered size cap), ``host_tag`` and ``claimed_table_audited``.

Each fixture is audited with ``run_audit`` and then ``build_tables``, once on a copy (the
findings) and once in place (the tree must come out byte-identical). No output may carry
a local path, and no CSV may carry ``nan`` or ``inf`` text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, REPO_ROOT

from benchtruth_utils import artifacts, build_tables, errors, run_audit
from benchtruth_utils.findings import Reason

CORPUS = FIXTURES / "corpus"
BENCH_LIST = "runs/orchestrator/s1/bench_dirs_all.txt"
PAPER_TABLES = "runs/orchestrator/s1/paper_tables"
GOOD_DIR = "runs/benchmarks/main_20260101_000001"
GOOD_KEY = ("main", "lstm", "concat", "base", False)
FINDING_LISTS = ("excluded", "warnings", "superseded_runs", "coverage")

# Fixtures whose code the package does not yet report as the README documents, by name,
# with what goes wrong. Each is an xfail(strict=True) so that a fix shows up at once; they
# repeat a code that another fixture proves, and do not count towards the codes proven.
KNOWN_BUGS: dict[str, tuple[type[Exception], str]] = {}

# Reason codes no fixture can trigger through run_audit, with why. Keep it empty: a code
# that cannot be triggered is dead code or a bug.
UNTRIGGERABLE: frozenset[str] = frozenset()

# Codes in the Reason enum that the README's "Reason codes" table does not list yet.
UNDOCUMENTED_IN_README: frozenset[str] = frozenset()


def _spec(fixture: Path) -> dict[str, Any]:
    return json.loads((fixture / "corpus.json").read_text(encoding="utf-8"))


def _fixtures() -> list[Path]:
    return sorted(path for path in CORPUS.iterdir() if path.is_dir())


def _params() -> list[Any]:
    params = []
    for fixture in _fixtures():
        marks = []
        if fixture.name in KNOWN_BUGS:
            raises, reason = KNOWN_BUGS[fixture.name]
            marks.append(pytest.mark.xfail(raises=raises, strict=True, reason=reason))
        params.append(pytest.param(fixture, id=fixture.name, marks=marks))
    return params


def _audit(root: Path, out: Path, spec: dict[str, Any], monkeypatch) -> tuple[dict, dict]:
    """run_audit then build_tables on the project root ``root``, writing under ``out``."""
    if "max_artifact_bytes" in spec:
        monkeypatch.setattr(artifacts, "MAX_ARTIFACT_BYTES", spec["max_artifact_bytes"])
    host_tag = spec.get("host_tag", "4090")
    result = run_audit(
        host_tag=host_tag,
        bench_list=str(root / BENCH_LIST),
        output_dir=str(out / "analysis"),
        paper_tables_dir=str(root / PAPER_TABLES),
        project_root=str(root),
    )
    frames = build_tables(
        truthfulness_json=result.truth_path,
        output_dir=str(out / "paper_tables"),
        host_tag=host_tag,
    )
    return result.truth, frames


def _findings(truth: dict[str, Any], where: str) -> list[tuple[str, str, str]]:
    """(code, path, item) of every finding in one list of the truth document."""
    if where == "superseded_runs":
        return [
            (run["code"], run["metrics_path"], f"results[{run['result_index']}]")
            for run in truth["superseded_runs"]
        ]
    if where == "coverage":
        return [
            (entry["plan_code"], entry["bench_dir"], "")
            for entry in truth["coverage"]
            if entry["plan_code"] is not None
        ]
    return [(entry["code"], entry["path"], entry["item"]) for entry in truth[where]]


def _tree_state(root: Path) -> dict[str, tuple[int, int, str]]:
    """Mode, mtime and content hash of every entry under ``root``, symlinks not followed."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = os.path.normpath(os.path.join(folder, name))
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path).encode()
            elif stat.S_ISREG(info.st_mode):
                content = Path(path).read_bytes()
            else:
                content = b""
            digest = hashlib.sha256(content).hexdigest()
            state[os.path.relpath(path, root)] = (info.st_mode, info.st_mtime_ns, digest)
    return state


def _assert_clean_outputs(out: Path, forbidden: list[str]) -> None:
    """No output names a local folder; no CSV carries nan or inf text."""
    written = [path for path in out.rglob("*") if path.is_file()]
    assert written, "the audit wrote nothing"
    for path in written:
        data = path.read_bytes()
        assert not [word for word in forbidden if word.encode() in data], path
        if path.suffix == ".csv":
            assert not re.search(rb"nan|inf", data.lower()), path


def _assert_good_runs_counted(truth: dict[str, Any], frames: dict[str, Any]) -> None:
    """The good dir's two results are real runs, and the tables hold every counted run."""
    good = {
        (run["seed"], run["result_index"])
        for run in truth["real_runs"]
        if run["run_dir"] == GOOD_DIR
    }
    assert {(0, 0), (1, 1)} <= good
    summary = next(entry for entry in truth["bench_dirs"] if entry["path"] == GOOD_DIR)
    assert summary["counted"]

    main = frames["main_results.csv"]
    assert int(main["n_runs"].sum()) == truth["real_run_count"]
    keys = main[["exp_name", "backbone", "fusion_type", "module_variant", "use_edgar"]]
    assert GOOD_KEY in set(keys.itertuples(index=False, name=None))


@pytest.mark.parametrize("fixture", _params())
def test_corpus_fixture_reports_exactly_its_code(fixture, tmp_path, monkeypatch):
    spec = _spec(fixture)
    root = tmp_path / "project"
    shutil.copytree(fixture, root, symlinks=True)
    out = tmp_path / "out"

    if spec["where"] == "refused":
        with pytest.raises(getattr(errors, spec["code"])) as refusal:
            _audit(root, out, spec, monkeypatch)
        assert getattr(refusal.value, "path", "") == spec["path"]
        assert getattr(refusal.value, "name", "") == spec["item"]
        assert not out.exists(), "a refusal must come before anything is written"
        return

    truth, frames = _audit(root, out, spec, monkeypatch)

    code = spec["code"]
    matching = [found for found in _findings(truth, spec["where"]) if found[0] == code]
    assert matching == [(code, spec["path"], spec["item"])]
    every_code = [found[0] for where in FINDING_LISTS for found in _findings(truth, where)]
    assert sorted(every_code) == sorted([code, *spec.get("also", [])])
    assert truth["real_run_count"] == spec["real_run_count"]
    if spec["real_run_count"]:
        _assert_good_runs_counted(truth, frames)
    if "claimed_table_audited" in spec:
        assert truth["claimed_table"]["path"] == spec["claimed_table_audited"]
    _assert_clean_outputs(out, [str(tmp_path), str(REPO_ROOT), "/root/", "/home/"])


@pytest.mark.parametrize("fixture", _params())
def test_corpus_fixture_left_byte_identical_by_an_audit_in_place(fixture, tmp_path, monkeypatch):
    spec = _spec(fixture)
    before = _tree_state(fixture)
    out = tmp_path / "out"

    if spec["where"] == "refused":
        with pytest.raises(getattr(errors, spec["code"])):
            _audit(fixture, out, spec, monkeypatch)
        assert not out.exists()
    else:
        _audit(fixture, out, spec, monkeypatch)
        _assert_clean_outputs(out, [str(tmp_path), str(REPO_ROOT), "/root/", "/home/"])

    assert _tree_state(fixture) == before


def _corpus_codes() -> Counter:
    """How many passing fixtures prove each reason code (refusals and known bugs left out)."""
    return Counter(
        _spec(fixture)["code"]
        for fixture in _fixtures()
        if fixture.name not in KNOWN_BUGS and _spec(fixture)["where"] != "refused"
    )


def test_corpus_fixtures_say_what_they_prove():
    required = {"code", "where", "path", "item", "real_run_count", "note"}
    for fixture in _fixtures():
        spec = _spec(fixture)
        assert required <= set(spec), fixture.name
        assert spec["where"] in {*FINDING_LISTS, "refused"}, fixture.name
        assert (spec["real_run_count"] is None) == (spec["where"] == "refused"), fixture.name
        assert (fixture / BENCH_LIST).is_file() or spec["where"] == "refused", fixture.name


def test_corpus_codes_are_reason_codes():
    # Several fixtures may prove one code by different faults (a truncated file and an
    # integer past Python's digit limit are both invalid JSON).
    assert set(_corpus_codes()) <= {reason.value for reason in Reason}


def test_corpus_covers_at_least_40_codes():
    assert len(_corpus_codes()) >= 40


def test_corpus_gap_is_only_the_untriggerable_codes():
    missing = {reason.value for reason in Reason} - set(_corpus_codes())
    assert missing == UNTRIGGERABLE


def test_corpus_where_matches_the_readme_table():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    documented = dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", table, flags=re.MULTILINE))

    specs = [spec for spec in map(_spec, _fixtures()) if spec["where"] != "refused"]
    assert {spec["code"] for spec in specs} - set(documented) == UNDOCUMENTED_IN_README
    for spec in specs:
        if spec["code"] in documented:
            assert spec["where"] == documented[spec["code"]], spec["code"]
