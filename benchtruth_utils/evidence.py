"""Is an executed notebook real evidence? Papermill can exit 0 when a notebook did not run.

A notebook without a ``parameters`` tag runs on its defaults, a killed kernel or a
``sys.exit(0)`` stops it early: the exit code does not tell. The executed notebook does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import nbformat

from .errors import BenchtruthError
from .outputs import atomic_write_text
from .truth import generation_time


class StrictAuditError(BenchtruthError):
    """A strict audit found what a paper table must not have."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        super().__init__("strict audit failed: " + "; ".join(failures))


def strict_failures(truth: Mapping[str, Any]) -> list[str]:
    """What makes a strict audit fail: phantom or drifted rows, conflicts, excluded entries."""
    claimed = truth["claimed_table"]
    unchecked = int(
        not claimed["present"] or (claimed["sha256"] is not None and not claimed["rows"])
    )
    checks = [
        (truth["phantom_rows_count"], "phantom claimed rows"),
        (truth["drifted_rows_count"], "drifted claimed rows"),
        (len(truth.get("conflicts", [])), "runs that disagree between hosts"),
        (len(truth["excluded"]), "excluded bench dirs or results"),
        (unchecked, "claimed table not checked (missing or unreadable)"),
    ]
    return [f"{count} {what}" for count, what in checks if count]


def enforce_strict(truth: Mapping[str, Any]) -> None:
    """Raise :class:`StrictAuditError` when :func:`strict_failures` finds anything."""
    failures = strict_failures(truth)
    if failures:
        raise StrictAuditError(failures)


ECHO_PREFIX = "benchtruth "


def echoed_parameters(notebook: nbformat.NotebookNode) -> dict[str, Any] | None:
    """The parameters the notebook printed after normalising them, or None if it did not.

    The echo cell prints ``benchtruth <version>`` and then the parameters as JSON; it is
    found by that output, not by its position, so that a notebook whose parameters cell
    lost its tag is still read (and then found to disagree with papermill's record).
    """
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        text = "".join(
            output.get("text", "")
            for output in cell.get("outputs", [])
            if output.get("name") == "stdout"
        )
        if not text.startswith(ECHO_PREFIX):
            continue
        start = text.find("{")
        try:
            echoed = json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            return None
        return echoed if isinstance(echoed, dict) else None
    return None


def _same_parameter(given: Any, echoed: Any) -> bool:
    # Papermill passes `-p host_tag 4090` as an int that the notebook normalises to text,
    # and None asks for the documented default, which the echo spells out.
    if given is None:
        return True
    return given == echoed or (isinstance(given, (int, float)) and str(given) == echoed)


def check_executed_notebook(path: str) -> list[str]:
    """Every reason the executed notebook at ``path`` is not evidence of a complete run.

    An empty list means: papermill recorded an end time and no exception, every code
    cell ran and none shows an error, and the parameters the notebook echoed equal the
    ones papermill recorded.
    """
    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as err:
        return [f"cannot be read as a notebook ({type(err).__name__})"]

    problems = []
    papermill = notebook.metadata.get("papermill", {})
    if not papermill:
        problems.append("no papermill metadata: not executed by papermill")
    if not papermill.get("end_time"):
        problems.append("no end_time: the run did not finish")
    if papermill.get("exception"):
        problems.append("papermill recorded an exception")

    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is None:
            problems.append(f"code cell {index} was not executed")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if any(error.get("ename") == "StrictAuditError" for error in errors):
            problems.append(f"the strict gate failed the run: {errors[0].get('evalue', '')}")
        elif errors:
            count = cell.get("execution_count")
            problems.append(f"code cell {index} (In [{count}]) shows an error")

    recorded = papermill.get("parameters", {})
    echoed = echoed_parameters(notebook)
    if echoed is None:
        problems.append("the notebook did not echo its parameters")
    else:
        differing = sorted(
            name for name, value in recorded.items() if not _same_parameter(value, echoed.get(name))
        )
        if differing:
            problems.append(f"echoed parameters differ from papermill's: {', '.join(differing)}")
    return problems


def pin_notebook_times(notebook: nbformat.NotebookNode, moment: str) -> None:
    """Replace the clock times papermill and nbclient record with ``moment``, durations with 0.

    Only for ``SOURCE_DATE_EPOCH`` builds, whose promise is byte-identical outputs: the
    times of a run are then the declared one, as for every other output, and the
    parameters cell papermill inserts gets a fixed id instead of a random one.
    """
    papermill = notebook.metadata.get("papermill", {})
    for field in ("start_time", "end_time"):
        if papermill.get(field):
            papermill[field] = moment
    if "duration" in papermill:
        papermill["duration"] = 0.0
    for cell in notebook.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            # Papermill gives the cell it inserts a random id.
            cell["id"] = "injected-parameters"
        timing = cell.get("metadata", {}).get("papermill", {})
        for field in ("start_time", "end_time"):
            if timing.get(field):
                timing[field] = moment
        if "duration" in timing:
            timing["duration"] = 0.0
        execution = cell.get("metadata", {}).get("execution")
        if execution:
            for field in execution:
                execution[field] = moment


def render_html(notebook: nbformat.NotebookNode) -> str:
    """The executed notebook as one self-contained HTML page (images embedded, no kernel)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": "evidence"}})
    return body


def finish_executed_notebook(path: str) -> str:
    """Make an executed notebook a finished record: each cell's printed text in one piece,
    pinned times (with SOURCE_DATE_EPOCH) and an HTML rendering beside it. Returns the HTML
    file's path."""
    # Imported here, as in render_html: nbconvert is slow to import and only this needs it.
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    notebook = nbformat.read(path, as_version=4)
    # The kernel sends a cell's printed text in pieces cut where it happened to flush, so
    # two runs could record the same text in different pieces; joined, they are the same.
    # (A progress bar's redraws, joined, show its last state.)
    notebook, _ = CoalesceStreamsPreprocessor().preprocess(notebook, {})
    if os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        pin_notebook_times(notebook, generation_time())
    atomic_write_text(path, nbformat.writes(notebook) + "\n")

    html_path = os.path.splitext(path)[0] + ".html"
    atomic_write_text(html_path, render_html(notebook))
    return html_path
