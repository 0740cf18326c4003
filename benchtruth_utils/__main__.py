"""Command line: ``python -m benchtruth_utils audit|verify|check-notebook``.

``audit`` runs both notebooks through papermill's Python API, so that a user needs no
Jupyter knowledge; it exits like the CI gate (1 on findings with ``--strict``, 2 when
the audit refuses to run).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import nbformat

from .errors import BenchtruthError, ParameterError
from .evidence import check_executed_notebook, finish_executed_notebook, strict_failures
from .outputs import atomic_write_text
from .params import normalise_host_tag
from .truth import load_truth
from .verify import verify_truth

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")

logger = logging.getLogger("benchtruth_utils.cli")


def _execute(name: str, output: str, parameters: dict) -> None:
    import papermill

    try:
        papermill.execute_notebook(
            os.path.join(NOTEBOOKS, name),
            output,
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
        )
    finally:
        if os.path.exists(output):
            _record_notebook_path(output, name)
            finish_executed_notebook(output)


def _record_notebook_path(output: str, name: str) -> None:
    # Papermill records where the source notebook was read from, an absolute local path
    # here; the evidence names it by its place in the benchtruth repository instead.
    executed = nbformat.read(output, as_version=4)
    executed.metadata["papermill"]["input_path"] = f"benchtruth/notebooks/{name}"
    executed.metadata["papermill"]["output_path"] = os.path.basename(output)
    atomic_write_text(output, nbformat.writes(executed) + "\n")


def _relative(name: str, path: str | None) -> str | None:
    """A path argument relative to the working directory, as the evidence records it."""
    if path is None:
        return None
    relative = os.path.relpath(os.path.abspath(path))
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise ParameterError(
            name, path, "a path inside the working directory (run from the project root)"
        )
    return relative


def command_audit(arguments: argparse.Namespace) -> int:
    """Run 01 then 02 into OUT/analysis and OUT/paper_tables; exit like the CI gate."""
    import papermill

    host = normalise_host_tag(arguments.host_tag)
    out = _relative("--out", arguments.out)
    project_root = _relative("--project-root", arguments.project_root)
    analysis = os.path.join(out, "analysis")
    tables = os.path.join(out, "paper_tables")
    audit_parameters = {
        "host_tag": host,
        "bench_list": _relative("--bench-list", arguments.bench_list),
        "output_dir": analysis,
        "paper_tables_dir": _relative("--paper-tables-dir", arguments.paper_tables_dir),
        "project_root": project_root,
        "strict": arguments.strict,
    }
    os.makedirs(analysis, exist_ok=True)
    os.makedirs(tables, exist_ok=True)

    # With --strict the 01 notebook fails after writing everything; 02 still runs.
    gate_failed = False
    audit_notebook = os.path.join(analysis, f"01_audit_{host}.ipynb")
    try:
        _execute("01_audit.ipynb", audit_notebook, audit_parameters)
    except papermill.PapermillExecutionError as err:
        if err.ename != "StrictAuditError":
            print(f"benchtruth: refused: {err.ename}: {err.evalue}", file=sys.stderr)
            return 2
        gate_failed = True

    truth_path = os.path.join(analysis, "benchmark_truthfulness.json")
    tables_parameters = {
        "host_tag": host,
        "truthfulness_json": truth_path,
        "output_dir": tables,
        "project_root": project_root,
    }
    try:
        _execute(
            "02_tables.ipynb", os.path.join(tables, f"02_tables_{host}.ipynb"), tables_parameters
        )
    except papermill.PapermillExecutionError as err:
        print(f"benchtruth: refused: {err.ename}: {err.evalue}", file=sys.stderr)
        return 2

    failures = strict_failures(load_truth(truth_path))
    print(f"benchtruth: audit of host {host} written to {out}")
    if failures:
        print("benchtruth: findings: " + "; ".join(failures))
    return 1 if gate_failed else 0


def command_verify(arguments: argparse.Namespace) -> int:
    """Re-hash every artifact a truth file records, and check the executed notebooks handed
    over; 1 when an artifact changed or went missing or a notebook is not evidence."""
    report = verify_truth(arguments.truth, arguments.project_root)
    for state in ("changed", "missing"):
        for path in report[state]:
            print(f"{state}: {path}")
    bad_notebooks = 0
    for path in arguments.notebooks:
        problems = check_executed_notebook(path)
        bad_notebooks += bool(problems)
        print(f"notebook {os.path.basename(path)}: {'ok' if not problems else '; '.join(problems)}")
    print(
        f"benchtruth verify: {len(report['unchanged'])} unchanged, "
        f"{len(report['changed'])} changed, {len(report['missing'])} missing"
    )
    return 1 if report["changed"] or report["missing"] or bad_notebooks else 0


def command_check_notebook(arguments: argparse.Namespace) -> int:
    """Say whether executed notebooks are evidence of complete runs; 1 if any is not."""
    failed = 0
    for path in arguments.notebooks:
        problems = check_executed_notebook(path)
        print(f"{os.path.basename(path)}: {'ok' if not problems else '; '.join(problems)}")
        failed += bool(problems)
    return 1 if failed else 0


def command_finish_notebook(arguments: argparse.Namespace) -> int:
    """Render each executed notebook to HTML beside it; with SOURCE_DATE_EPOCH, pin its times."""
    for path in arguments.notebooks:
        print(f"wrote {os.path.basename(finish_executed_notebook(path))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchtruth_utils", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    audit = commands.add_parser("audit", help="run 01_audit and 02_tables through papermill")
    audit.add_argument("--host-tag", required=True)
    audit.add_argument("--bench-list", required=True)
    audit.add_argument("--out", required=True, help="writes OUT/analysis and OUT/paper_tables")
    audit.add_argument("--paper-tables-dir", default=None, help="folder of the claimed table")
    audit.add_argument("--project-root", default=".")
    audit.add_argument("--strict", action="store_true", help="exit 1 on findings")
    audit.set_defaults(run=command_audit)

    verify = commands.add_parser("verify", help="re-hash the artifacts a truth file records")
    verify.add_argument("--truth", required=True)
    verify.add_argument("--project-root", default=".")
    verify.add_argument("--notebooks", nargs="*", default=[], help="executed notebooks to check")
    verify.set_defaults(run=command_verify)

    finish = commands.add_parser(
        "finish-notebook", help="render executed notebooks to HTML (and pin times for reruns)"
    )
    finish.add_argument("notebooks", nargs="+")
    finish.set_defaults(run=command_finish_notebook)

    check = commands.add_parser("check-notebook", help="is an executed notebook real evidence")
    check.add_argument("notebooks", nargs="+")
    check.set_defaults(run=command_check_notebook)

    arguments = parser.parse_args(argv)
    try:
        return arguments.run(arguments)
    except BenchtruthError as err:
        print(f"benchtruth: refused: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
