"""Checking and normalising the notebook parameters before anything is written."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence

from .errors import ParameterError
from .runs import parse_flag

DEFAULT_HOST_TAGS = ("3090", "4090")

_PLAIN_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def normalise_host_tag(
    host_tag: object, allowed_host_tags: Iterable[object] = DEFAULT_HOST_TAGS
) -> str:
    """Return the host tag as text, refusing anything that is not an allowed plain token.

    Papermill passes ``-p host_tag 4090`` as the int 4090, hence the conversion. The
    tag becomes part of file names, so it must not carry a path separator or ``..``.
    """
    if isinstance(host_tag, bool) or not isinstance(host_tag, (str, int)):
        raise ParameterError("host_tag", host_tag, "text or a whole number such as 4090")

    text = str(host_tag).strip()
    allowed = normalise_allowed_host_tags(allowed_host_tags)
    if not _PLAIN_TOKEN.match(text):
        raise ParameterError("host_tag", host_tag, "a plain token of letters, digits, '_' or '-'")
    if text not in allowed:
        raise ParameterError("host_tag", host_tag, f"one of {allowed}")
    return text


def normalise_allowed_host_tags(allowed_host_tags: object) -> list[str]:
    """The allowed host tags as a list of text; a bare string would be read letter by letter."""
    if isinstance(allowed_host_tags, (str, bytes, int)) or not isinstance(
        allowed_host_tags, Iterable
    ):
        raise ParameterError(
            "allowed_host_tags", allowed_host_tags, "a list such as ['3090', '4090']"
        )
    allowed = []
    for tag in allowed_host_tags:
        if isinstance(tag, bool) or not isinstance(tag, (str, int)):
            raise ParameterError(
                "allowed_host_tags", allowed_host_tags, "a list of text or numbers"
            )
        allowed.append(str(tag).strip())
    return allowed


def normalise_path_parameter(name: str, value: object) -> str:
    """A path parameter as non-empty text (papermill may hand over other types)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ParameterError(name, value, "a non-empty path without NUL characters")
    return value.strip()


def check_output_dir(name: str, output_dir: str, files: Sequence[str] = ()) -> None:
    """Refuse an output folder that cannot be written, before anything is read or written.

    ``files`` are the paths, relative to ``output_dir``, that the caller will replace: a
    folder standing at one of them, or a subfolder of theirs that cannot be written, would
    otherwise fail the caller halfway through putting its outputs in place.
    """
    existing = output_dir
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    existing = existing or "."
    if not os.path.isdir(existing):
        raise ParameterError(name, output_dir, "a folder (a file of that name is in the way)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ParameterError(name, output_dir, "a folder this process may write to")
    for sub in ("logs",):
        inner = os.path.join(output_dir, sub)
        if os.path.exists(inner) and not os.path.isdir(inner):
            raise ParameterError(name, output_dir, f"a folder in which '{sub}' is a folder too")
    for file in files:
        target = os.path.join(output_dir, file)
        if os.path.isdir(target) and not os.path.islink(target):
            raise ParameterError(
                name, output_dir, f"a folder in which '{file}' is not a folder (remove it)"
            )
        folder = os.path.dirname(target)
        if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
            inner = os.path.relpath(folder, output_dir)
            raise ParameterError(name, output_dir, f"a folder whose '{inner}' may be written to")


def default_paper_tables_dir(output_dir: str) -> str:
    """The folder ``paper_tables`` beside ``output_dir``, as in the runner's per-stamp layout."""
    parent = os.path.dirname(os.path.normpath(output_dir))
    return os.path.join(parent, "paper_tables") if parent else "paper_tables"


def audit_parameters(
    host_tag: object,
    bench_list: object,
    output_dir: object,
    paper_tables_dir: object,
    project_root: object,
    allowed_host_tags: object,
    rel_tol: object = 1e-6,
    abs_tol: object = 1e-9,
    strict: object = False,
    progress: object = True,
) -> dict[str, object]:
    """The 01 notebook's parameters, normalised: what :func:`run_audit` will really use.

    Raises
    ------
    ParameterError
        For any parameter the audit would refuse, before anything is written.
    """
    allowed = normalise_allowed_host_tags(allowed_host_tags)
    output_dir = normalise_path_parameter("output_dir", output_dir)
    if paper_tables_dir is None or paper_tables_dir == "":
        paper_tables_dir = default_paper_tables_dir(output_dir)

    return {
        "host_tag": normalise_host_tag(host_tag, allowed),
        "bench_list": normalise_path_parameter("bench_list", bench_list),
        "output_dir": output_dir,
        "paper_tables_dir": normalise_path_parameter("paper_tables_dir", paper_tables_dir),
        "project_root": normalise_path_parameter("project_root", project_root),
        "allowed_host_tags": allowed,
        "rel_tol": normalise_tolerance("rel_tol", rel_tol),
        "abs_tol": normalise_tolerance("abs_tol", abs_tol),
        "strict": normalise_flag_parameter("strict", strict),
        "progress": normalise_flag_parameter("progress", progress),
    }


def normalise_flag_parameter(name: str, value: object) -> bool:
    """A yes/no parameter; ``"False"`` (text, from ``papermill -r``) must not read as true."""
    flag = parse_flag(value)
    if flag is None:
        raise ParameterError(name, value, "true or false")
    return flag


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# More processes than this a core only wait for each other (and fill the memory).
MAX_WORKERS_A_CORE = 4


def normalise_workers(value: object) -> int:
    """How many processes read bench dirs: one a core by default (None).

    A whole number of 1 or more (text too, as ``papermill -r`` passes it), at most
    ``MAX_WORKERS_A_CORE`` a core: a mistyped 10**20 must not fork until the machine stops.
    """
    if value is None:
        return available_cores()
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError("workers", value, "a whole number of processes, 1 or more")
    return min(value, MAX_WORKERS_A_CORE * available_cores())


def normalise_tolerance(name: str, value: object) -> float:
    """A drift tolerance as a finite, non-negative float (papermill may pass an int or text)."""
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number < 0:
        raise ParameterError(name, value, "a finite number >= 0, such as 1e-6")
    return number


def tables_parameters(
    host_tag: object,
    truthfulness_json: object,
    output_dir: object,
    allowed_host_tags: object = DEFAULT_HOST_TAGS,
    project_root: object = None,
    allow_changed_artifacts: object = False,
    decimals: object = 3,
) -> dict[str, object]:
    """The 02 notebook's parameters, normalised: what :func:`build_tables` will really use."""
    allowed = normalise_allowed_host_tags(allowed_host_tags)
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 12:
        raise ParameterError("decimals", decimals, "a whole number from 0 to 12")
    return {
        "host_tag": normalise_host_tag(host_tag, allowed),
        "truthfulness_json": normalise_path_parameter("truthfulness_json", truthfulness_json),
        "output_dir": normalise_path_parameter("output_dir", output_dir),
        "allowed_host_tags": allowed,
        "project_root": None
        if project_root is None
        else normalise_path_parameter("project_root", project_root),
        "allow_changed_artifacts": normalise_flag_parameter(
            "allow_changed_artifacts", allow_changed_artifacts
        ),
        "decimals": decimals,
    }
