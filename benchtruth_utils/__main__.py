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

from .errors import BenchtruthError
from .evidence import check_executed_notebook, strict_failures
from .outputs import atomic_write_text
from .truth import load_truth
from .verify import verify_truth

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")

logger = logging.getLogger("benchtruth_utils.cli")


def _execute(name: str, output: str, parameters: dict) -> None:
    import papermill

    papermill.execute_notebook(
        os.path.join(NOTEBOOKS, name),
        output,
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
    )
    # Papermill records where the source notebook was read from, an absolute local path
    # here; the evidence names it by its place in the benchtruth repository instead.
    executed = nbformat.read(output, as_version=4)
    executed.metadata["papermill"]["input_path"] = f"benchtruth/notebooks/{name}"
    executed.metadata["papermill"]["output_path"] = os.path.basename(output)
    atomic_write_text(output, nbformat.writes(executed) + "\n")


def command_audit(arguments: argparse.Namespace) -> int:
    """Run 01 then 02 into OUT/analysis and OUT/paper_tables; exit like the CI gate."""
    import papermill

    host = str(arguments.host_tag)
    analysis = os.path.join(arguments.out, "analysis")
    tables = os.path.join(arguments.out, "paper_tables")
    os.makedirs(analysis, exist_ok=True)
    os.makedirs(tables, exist_ok=True)

    audit_parameters = {
        "host_tag": host,
        "bench_list": arguments.bench_list,
        "output_dir": analysis,
        "paper_tables_dir": arguments.paper_tables_dir,
        "project_root": arguments.project_root,
        "strict": False,
    }
    try:
        _execute(
            "01_audit.ipynb", os.path.join(analysis, f"01_audit_{host}.ipynb"), audit_parameters
        )
        truth_path = os.path.join(analysis, "benchmark_truthfulness.json")
        _execute(
            "02_tables.ipynb",
            os.path.join(tables, f"02_tables_{host}.ipynb"),
            {"host_tag": host, "truthfulness_json": truth_path, "output_dir": tables},
        )
    except papermill.PapermillExecutionError as err:
        print(f"benchtruth: refused: {err.ename}: {err.evalue}", file=sys.stderr)
        return 2

    failures = strict_failures(load_truth(truth_path))
    print(f"benchtruth: audit of host {host} written to {arguments.out}")
    if failures:
        print("benchtruth: findings: " + "; ".join(failures))
    return 1 if failures and arguments.strict else 0


def command_verify(arguments: argparse.Namespace) -> int:
    """Re-hash every artifact a truth file records; 1 when any changed or went missing."""
    report = verify_truth(arguments.truth, arguments.project_root)
    for state in ("changed", "missing"):
        for path in report[state]:
            print(f"{state}: {path}")
    print(
        f"benchtruth verify: {len(report['unchanged'])} unchanged, "
        f"{len(report['changed'])} changed, {len(report['missing'])} missing"
    )
    return 1 if report["changed"] or report["missing"] else 0


def command_check_notebook(arguments: argparse.Namespace) -> int:
    """Say whether executed notebooks are evidence of complete runs; 1 if any is not."""
    failed = 0
    for path in arguments.notebooks:
        problems = check_executed_notebook(path)
        print(f"{os.path.basename(path)}: {'ok' if not problems else '; '.join(problems)}")
        failed += bool(problems)
    return 1 if failed else 0


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
    verify.set_defaults(run=command_verify)

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
