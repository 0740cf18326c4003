"""Reading the bench list: which bench dirs the audit looks at, each counted once."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os

from .artifacts import read_regular_file
from .errors import BenchListError
from .findings import Finding, Reason, Scope
from .paths import display_path, lexical_relative

logger = logging.getLogger(__name__)

MAX_BENCH_LIST_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class BenchEntry:
    """One distinct bench dir named by the bench list.

    ``path`` is what the evidence shows (relative to the project root), ``location``
    what the process opens, and ``line`` the first line of the list that named it.
    """

    path: str
    location: str
    line: int
    inside_root: bool


@dataclasses.dataclass
class BenchList:
    """The distinct entries of a bench list, plus what was said about the list itself."""

    path: str
    sha256: str
    entries: list[BenchEntry]
    findings: list[Finding]


def _follow_dir_links(location: str, project_root: str) -> str:
    """Where a listed ``latest``-style link points, when that stays inside the project root.

    The dir's own name carries its experiment name, and run logs name the real dir;
    a link to a place outside the root (a ``runs/`` on another disk) is kept as listed.
    """
    current = location
    for _ in range(40):
        if not os.path.islink(current):
            break
        target = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
        if lexical_relative(target, project_root) is None:
            return location
        current = target
    return current


def parse_bench_list_text(text: str) -> list[tuple[int, str]]:
    """Return ``(line number, path)`` for every line that names a bench dir.

    Blank lines and ``#`` comments are skipped, surrounding blanks stripped, and a
    leading BOM or CRLF line ends do not change what a line says.
    """
    named = []
    for number, raw_line in enumerate(text.lstrip("\ufeff").split("\n"), start=1):
        line = raw_line.strip()
        if line and not line.startswith("#"):
            named.append((number, line))
    return named


def _identity(location: str) -> tuple[str, object]:
    # Two spellings of one folder (./x/, a symlink to x, x itself) share an inode;
    # a path that does not exist yet can only be compared by its resolved text.
    try:
        status = os.stat(location)
    except OSError:
        return ("path", os.path.realpath(location))
    return ("inode", (status.st_dev, status.st_ino))


def read_bench_list(bench_list: str, project_root: str) -> BenchList:
    """Read the bench list file and resolve its entries against ``project_root``.

    Parameters
    ----------
    bench_list:
        Path of the list, as the caller can open it.
    project_root:
        Folder that relative entries are resolved against.

    Returns
    -------
    BenchList
        Distinct entries in list order; repeats and list-level problems as findings.

    Raises
    ------
    BenchListError
        When the file is missing, not a file, or cannot be read: there is nothing to audit.
    """
    shown = display_path(bench_list, project_root)

    try:
        raw = read_regular_file(bench_list, MAX_BENCH_LIST_BYTES + 1)
    except FileNotFoundError as err:
        raise BenchListError(shown, "no such file") from err
    except IsADirectoryError as err:
        raise BenchListError(shown, "is a directory, not a file") from err
    except OSError as err:
        raise BenchListError(shown, f"cannot be read ({err.strerror})") from err

    digest = hashlib.sha256(raw).hexdigest()
    findings: list[Finding] = []
    if len(raw) > MAX_BENCH_LIST_BYTES:
        raise BenchListError(shown, f"larger than {MAX_BENCH_LIST_BYTES} bytes")

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        findings.append(
            Finding(Reason.BENCH_LIST_NOT_TEXT, Scope.BENCH_LIST, shown, f"not UTF-8 text: {err}")
        )
        return BenchList(shown, digest, [], findings)
    if "\x00" in text:
        findings.append(
            Finding(Reason.BENCH_LIST_NOT_TEXT, Scope.BENCH_LIST, shown, "holds NUL bytes")
        )
        return BenchList(shown, digest, [], findings)

    named = parse_bench_list_text(text)
    if not named:
        findings.append(
            Finding(Reason.BENCH_LIST_EMPTY, Scope.BENCH_LIST, shown, "no line names a bench dir")
        )

    entries: list[BenchEntry] = []
    first_line_of: dict[tuple[str, object], BenchEntry] = {}
    for number, listed in named:
        spelled = os.path.normpath(os.path.join(project_root, listed))
        location = _follow_dir_links(spelled, project_root)
        relative = lexical_relative(location, project_root)
        entry = BenchEntry(
            path=relative if relative is not None else f"{shown}:{number}",
            location=location,
            line=number,
            inside_root=relative is not None,
        )

        identity = _identity(location)
        earlier = first_line_of.get(identity)
        if earlier is not None:
            findings.append(
                Finding(
                    Reason.BENCH_DIR_LISTED_AGAIN,
                    Scope.BENCH_LIST,
                    f"{shown}:{number}",
                    f"names the same dir as line {earlier.line} ({earlier.path}); counted once",
                    item=lexical_relative(spelled, project_root) or entry.path,
                )
            )
            continue

        first_line_of[identity] = entry
        entries.append(entry)

    logger.info(
        "bench list %s: %d lines name %d distinct bench dirs",
        shown,
        len(named),
        len(entries),
    )
    return BenchList(shown, digest, entries, findings)


def find_unlisted_dirs(entries: list[BenchEntry], project_root: str) -> list[Finding]:
    """Bench dirs beside the listed ones that the bench list does not name.

    A run on disk that is left out of the list is not counted, and that is right; but
    a claimed table built by globbing may contain it, and this says where it came from.
    """
    listed = {_identity(entry.location) for entry in entries}
    # Thousands of entries share a handful of parents: each is checked once.
    parents = sorted(
        parent
        for parent in {os.path.dirname(entry.location) for entry in entries if entry.inside_root}
        if lexical_relative(parent, project_root)
    )

    findings = []
    for parent in parents:
        try:
            names = sorted(os.listdir(parent))
        except OSError:
            continue
        for name in names:
            location = os.path.join(parent, name)
            if _identity(location) in listed or not os.path.isfile(
                os.path.join(location, "metrics.json")
            ):
                continue
            findings.append(
                Finding(
                    Reason.BENCH_DIR_NOT_LISTED,
                    Scope.BENCH_LIST,
                    display_path(location, project_root),
                    "holds a metrics.json beside the listed dirs but is not in the bench list; "
                    "its runs are not counted (a globbing table builder would have used them)",
                )
            )
    return findings
