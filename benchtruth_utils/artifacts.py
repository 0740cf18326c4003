"""Reading the files a bench dir holds, each into data or a finding, never an exception.

Every reader here takes a path and returns what it parsed together with the
finding that explains why it could not, so that one bad file never stops an audit.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import orjson
import yaml

from .findings import Reason

logger = logging.getLogger(__name__)

# Large enough for a runner's metrics.json with many thousands of results (48 results
# take 30 kB), small enough that a stray multi-gigabyte file cannot exhaust memory.
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024

METRICS_FILE = "metrics.json"
STATUS_RUN_FILE = "STATUS_RUN.json"
CONFIG_FILE = os.path.join("configs", "resolved_config.yaml")


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's C parser when present), remembering the implicit tag
    of each short plain scalar it has resolved.

    The tag of a plain scalar (null, bool, int, float or str) depends on its text alone,
    and PyYAML finds it by trying the resolvers' regular expressions in Python, one scalar
    at a time: a seventh of parsing a runner's config, whose keys and values repeat from
    one bench dir to the next. A subclass, which may add resolvers, resolves as PyYAML does.
    """

    _remembered_tags: ClassVar[dict[tuple[str, Any], str]] = {}
    # Past this many, the memory is emptied: values unique to one dir (its paths and
    # hashes) would otherwise pile up over a large benchmark. Longer texts are not kept,
    # so that the memory stays small whatever the configs hold.
    _MAX_REMEMBERED_TAGS = 4096
    _MAX_REMEMBERED_LENGTH = 128

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode or type(self) is not YamlLoader:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = self._remembered_tags.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if implicit[0] and len(value) <= self._MAX_REMEMBERED_LENGTH:
                if len(self._remembered_tags) >= self._MAX_REMEMBERED_TAGS:
                    self._remembered_tags.clear()
                self._remembered_tags[key] = tag
        return tag


MAX_YAML_FLOW_DEPTH = 1000

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \| (\w+) \| (.*)$")
_OUTPUT_PREFIX = "Output: "


@dataclasses.dataclass
class Parsed:
    """What a reader got from one file: a value, or the reason and detail why not."""

    value: Any = None
    sha256: str | None = None
    reason: Reason | None = None
    detail: str = ""
    present: bool = True
    bom: bool = False

    @property
    def ok(self) -> bool:
        return self.reason is None and self.present


def _read_bytes(path: str) -> tuple[bytes | None, str | None, str]:
    """Read a whole file under the size cap; return (bytes, problem kind, detail)."""
    try:
        data = read_regular_file(path, MAX_ARTIFACT_BYTES + 1)
    except FileNotFoundError:
        return None, "missing", "file not found"
    except IsADirectoryError:
        return None, "unreadable", "is a directory, not a file"
    except PermissionError:
        return None, "unreadable", "permission denied"
    except OSError as err:
        return None, "unreadable", f"cannot be read ({err.strerror or type(err).__name__})"

    if len(data) > MAX_ARTIFACT_BYTES:
        return None, "too_large", f"larger than the {MAX_ARTIFACT_BYTES} byte cap"
    return data, None, ""


def read_regular_file(path: str, limit: int) -> bytes:
    """Read at most ``limit`` bytes of a regular file.

    A FIFO, socket or device in the place of a file would block or never end, so
    anything but a regular file is refused with ``IsADirectoryError`` or ``OSError``.
    """
    status = os.stat(path)
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    if not stat.S_ISREG(status.st_mode):
        raise OSError(errno.EINVAL, "not a regular file (a pipe, socket or device)", path)
    with open(path, "rb") as handle:
        # A buffer sized to the file, not to the limit: one of the limit's 64 MB is fresh
        # memory that the kernel finds and zeroes a page at a time, which made reading a
        # runner's 30 kB metrics.json two to five times slower. The byte past the size
        # shows a file that is longer than it said (one that grew, or a /proc file).
        wanted = min(status.st_size + 1, limit)
        data = handle.read(wanted)
        if len(data) == wanted and wanted < limit:
            data += handle.read(limit - wanted)
        return data


def file_sha256(path: str) -> str | None:
    """The sha256 of a file's bytes, streamed; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


# An integer literal of 19 digits or more may not fit in 64 bits, where orjson would
# return a float in its place (json keeps the exact integer). Found as a run of nines once
# every digit reads as a nine: ten times faster than a regular expression.
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")
_LONG_DIGIT_RUN = b"9" * 19


def _has_long_digit_run(data: bytes) -> bool:
    return _LONG_DIGIT_RUN in data.translate(_DIGITS_AS_NINES)


# orjson reads 1024 levels of nesting, json fewer (the interpreter's recursion limit): a
# document with this many brackets, which bound its depth, goes to json, whose verdict
# stands, parsed on a fresh stack (see _on_fresh_stack).
_MAX_BRACKETS_FOR_ORJSON = 900


def _many_brackets(text: bytes | str) -> bool:
    opening = (b"[", b"{") if isinstance(text, bytes) else ("[", "{")
    return text.count(opening[0]) + text.count(opening[1]) > _MAX_BRACKETS_FOR_ORJSON


def _orjson_agrees(data: bytes) -> bool:
    """Whether orjson's reading of ``data``, if it has one, is json's (see _decode_json)."""
    return not _many_brackets(data) and not _has_long_digit_run(data)


_T = TypeVar("_T")


def _on_fresh_stack(parse: Callable[[], _T]) -> _T:
    """``parse()``, run in a thread of its own, whose recursion limit counts from an empty
    stack; what it raises is raised here.

    A recursive parser (json, PyYAML's Python loader) gives up on deep nesting when the
    interpreter's recursion limit is reached, counting the calls already on the stack: a
    metrics.json nested 950 levels deep was read in a worker process and refused in a
    notebook, so the outputs depended on how the audit was run. On a fresh stack the
    verdict depends on the document alone.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = parse()
        except BaseException as err:  # handed to the caller, which handles it
            outcome["error"] = err

    thread = threading.Thread(target=run, name="benchtruth-parse")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _decode_json(data: bytes) -> tuple[Any, str | None, str]:
    """Decode JSON as the runner writes it: bare NaN and Infinity tokens are allowed."""
    # orjson parses a runner's metrics.json about twice as fast as json and agrees with
    # it on every document it accepts, save long integers and deep nesting (kept away by
    # _orjson_agrees). What it refuses (NaN, Infinity, 1e400, lone surrogates, a byte
    # order mark, bad UTF-8, an empty file) goes to json, whose verdict and messages stand.
    if _orjson_agrees(data):
        try:
            return orjson.loads(data), None, ""
        except orjson.JSONDecodeError:
            pass
    return _decode_json_stock(data)


def _decode_json_stock(data: bytes) -> tuple[Any, str | None, str]:
    """:func:`_decode_json` with the json module alone: the verdict that stands."""
    if not data.strip():
        return None, "empty", "file is empty"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return None, "not_utf8", f"not UTF-8 text ({err.reason} at byte {err.start})"
    try:
        if _many_brackets(text):
            return _on_fresh_stack(lambda: json.loads(text)), None, ""
        return json.loads(text), None, ""
    except json.JSONDecodeError as err:
        return None, "invalid", f"not valid JSON ({err.msg} at line {err.lineno})"
    except RecursionError:
        return None, "invalid", "not valid JSON (nested too deeply)"
    except ValueError as err:
        # Python refuses integer literals past its digit limit with a plain ValueError.
        return None, "invalid", f"not valid JSON ({str(err).split(';')[0]})"


def read_metrics(bench_dir: str) -> Parsed:
    """Parse ``metrics.json`` of a bench dir into its top-level object.

    Only the shape of the top level is checked here; result by result checks
    belong to :mod:`benchtruth_utils.runs`.
    """
    data, problem, detail = _read_bytes(os.path.join(bench_dir, METRICS_FILE))
    if problem == "missing":
        return Parsed(reason=Reason.METRICS_MISSING, detail=detail, present=False)
    if problem == "too_large":
        return Parsed(reason=Reason.METRICS_TOO_LARGE, detail=detail)
    if problem is not None:
        return Parsed(reason=Reason.METRICS_UNREADABLE, detail=detail)

    digest = hashlib.sha256(data).hexdigest()
    document, problem, detail = _decode_json(data)
    if problem is not None:
        reason = {
            "empty": Reason.METRICS_EMPTY,
            "not_utf8": Reason.METRICS_NOT_UTF8,
            "invalid": Reason.METRICS_INVALID_JSON,
        }[problem]
        return Parsed(sha256=digest, reason=reason, detail=detail)

    if not isinstance(document, dict):
        found = type(document).__name__
        return Parsed(
            sha256=digest, reason=Reason.METRICS_NOT_OBJECT, detail=f"top level is {found}"
        )
    return Parsed(value=document, sha256=digest, bom=data.startswith(codecs.BOM_UTF8))


def read_status_run(bench_dir: str) -> Parsed:
    """Parse ``STATUS_RUN.json``; absent is fine (``present`` False), malformed is a finding."""
    data, problem, detail = _read_bytes(os.path.join(bench_dir, STATUS_RUN_FILE))
    if problem == "missing":
        return Parsed(present=False)
    if problem is not None:
        return Parsed(reason=Reason.STATUS_RUN_UNREADABLE, detail=detail)

    digest = hashlib.sha256(data).hexdigest()

    document, problem, detail = _decode_json(data)
    if problem is not None:
        return Parsed(sha256=digest, reason=Reason.STATUS_RUN_UNREADABLE, detail=detail)
    if not isinstance(document, dict):
        found = type(document).__name__
        return Parsed(
            sha256=digest, reason=Reason.STATUS_RUN_UNREADABLE, detail=f"top level is {found}"
        )
    return Parsed(sha256=digest, value=document)


def read_config(bench_dir: str) -> Parsed:
    """Parse ``configs/resolved_config.yaml`` with the safe (C when present) loader."""
    data, problem, detail = _read_bytes(os.path.join(bench_dir, CONFIG_FILE))
    if problem == "missing":
        return Parsed(present=False)
    if problem is not None:
        return Parsed(reason=Reason.CONFIG_UNREADABLE, detail=detail)

    digest = hashlib.sha256(data).hexdigest()

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return Parsed(
            sha256=digest, reason=Reason.CONFIG_UNREADABLE, detail=f"not UTF-8 text ({err.reason})"
        )
    if _flow_depth(text) > MAX_YAML_FLOW_DEPTH:
        detail = f"nested deeper than {MAX_YAML_FLOW_DEPTH} levels of brackets"
        return Parsed(sha256=digest, reason=Reason.CONFIG_UNREADABLE, detail=detail)

    # libyaml's C loader overflows the C stack (a segfault) on deep block nesting too;
    # the pure-Python loader raises RecursionError instead. Real configs have a few dozen
    # nesting marks, so only a suspicious file pays for the slower loader.
    marks = text.count("- ") + text.count(": ") + text.count("[") + text.count("{")
    loader = yaml.SafeLoader if marks > MAX_YAML_FLOW_DEPTH else YamlLoader
    try:
        if loader is yaml.SafeLoader:
            # The Python loader recurses with the nesting (see _on_fresh_stack).
            document = _on_fresh_stack(lambda: yaml.load(text, Loader=loader))
        else:
            document = yaml.load(text, Loader=loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return Parsed(
            sha256=digest, reason=Reason.CONFIG_UNREADABLE, detail=f"not valid YAML{where}"
        )
    except RecursionError:
        return Parsed(
            sha256=digest,
            reason=Reason.CONFIG_UNREADABLE,
            detail="not valid YAML (nested too deeply)",
        )
    except ValueError as err:
        # A scalar past Python's integer digit limit, for one.
        detail = f"not readable YAML ({str(err).split(';')[0]})"
        return Parsed(sha256=digest, reason=Reason.CONFIG_UNREADABLE, detail=detail)

    if not isinstance(document, dict):
        found = type(document).__name__
        return Parsed(
            sha256=digest,
            reason=Reason.CONFIG_UNREADABLE,
            detail=f"top level is {found}, not a mapping",
        )
    return Parsed(sha256=digest, value=document)


def _flow_depth(text: str) -> int:
    """The deepest nesting of YAML flow brackets, counted without parsing.

    libyaml's C loader crashes the process (not an exception) on flow collections nested
    tens of thousands deep, so such a file is refused before it reaches the loader.
    Brackets inside quoted strings are counted too, which only errs towards refusing.
    """
    if text.count("[") + text.count("{") <= MAX_YAML_FLOW_DEPTH:
        return 0
    depth = deepest = 0
    for character in text:
        if character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}" and depth:
            depth -= 1
    return deepest


@dataclasses.dataclass(frozen=True)
class RunLog:
    """What one run log tells: the bench dir it produced and its wall time."""

    output_dir: str | None
    wall_seconds: float | None


def parse_run_log(text: str) -> RunLog:
    """Find the ``Output:`` dir and the span from first to last timestamped line."""
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    backwards = False
    output_dir: str | None = None

    for line in text.splitlines():
        match = _LOG_LINE.match(line.strip())
        if match is None:
            continue
        try:
            stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            continue
        first = stamp if first is None else first
        backwards = backwards or (last is not None and stamp < last)
        last = stamp
        message = match.group(3)
        if match.group(2) == "INFO" and message.startswith(_OUTPUT_PREFIX):
            output_dir = message[len(_OUTPUT_PREFIX) :].strip()

    wall = (last - first).total_seconds() if first is not None and last is not None else None
    if wall is not None and (wall < 0 or backwards):
        # The clock went back (or lines are out of order): the span means nothing.
        wall = None
    return RunLog(output_dir=output_dir, wall_seconds=wall)


def read_run_log(path: str) -> Parsed:
    """Read one run log into a :class:`RunLog`, or a finding when it cannot be read."""
    data, problem, detail = _read_bytes(path)
    if problem is not None:
        return Parsed(reason=Reason.RUN_LOG_UNREADABLE, detail=detail)
    digest = hashlib.sha256(data).hexdigest()
    return Parsed(value=parse_run_log(data.decode("utf-8", errors="replace")), sha256=digest)
