"""The truth document: the single source of truth that every table is built from."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

import jsonschema
import orjson

from . import bulkschema
from .errors import ParameterError, TruthFileError
from .outputs import (
    EncodedItems,
    FileRange,
    iter_strict_json,
    publish_file,
    write_unpublished,
)
from .runs import RECORD_FIELDS, RunRecord

SCHEMA_VERSION = 1
KNOWN_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
TRUTH_FILE = "benchmark_truthfulness.json"

METRIC_EXTRACTION_MAPPING = {
    "rmse": "metrics.json .results[].rmse",
    "mae": "metrics.json .results[].mae",
    "mse": "metrics.json .results[].mse",
    "r2": "metrics.json .results[].r2",
    "train_time_sec": (
        "metrics.json .results[].train_time_sec; else the bench dir's run log "
        "(<bench list folder>/logs/*.log whose 'Output:' line names the dir): "
        "first to last timestamped line, divided by the dir's number of results"
    ),
    "max_cuda_mem_mb": "metrics.json .results[].max_cuda_mem_mb",
    "seed": "metrics.json .results[].seed (an integer)",
    "backbone": "metrics.json .results[].backbone; else .results[].model",
    "fusion_type": "metrics.json .results[].fusion_type",
    "module_variant": "metrics.json .results[].module_variant",
    "exp_name": (
        "metrics.json .exp_name; else configs/resolved_config.yaml exp_name; "
        "else the bench dir name without its _YYYYmmdd_HHMMSS suffix"
    ),
    "use_edgar": (
        "metrics.json .results[].use_edgar; else metrics.json .use_edgar; "
        "else configs/resolved_config.yaml use_edgar"
    ),
}


def generation_time() -> str:
    """The one time an output carries: now in UTC, or ``SOURCE_DATE_EPOCH`` when set."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        moment = dt.datetime.now(tz=dt.UTC).replace(microsecond=0)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        moment = dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC)
    except (ValueError, OverflowError, OSError) as err:
        raise ParameterError("SOURCE_DATE_EPOCH", epoch, "whole seconds since 1970") from err
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_schema_version(document: Mapping[str, Any], shown: str) -> None:
    """Refuse a truth document of a schema version this reader does not know."""
    version = document.get("schema_version")
    if version not in KNOWN_SCHEMA_VERSIONS:
        known = ", ".join(str(known) for known in sorted(KNOWN_SCHEMA_VERSIONS))
        raise TruthFileError(
            shown,
            f"schema_version {version!r} is not one this benchtruth reads ({known}); "
            "use the benchtruth version that wrote it",
        )


SCHEMA_FILE = os.path.join(
    os.path.dirname(__file__), "schemas", "benchmark_truthfulness.schema.json"
)


@functools.cache
def truth_schema() -> dict[str, Any]:
    """The JSON Schema of the truth document, shipped in the package."""
    with open(SCHEMA_FILE, encoding="utf-8") as handle:
        return json.load(handle)


_ONE_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def encode_run_records(records: Sequence[RunRecord]) -> list[bytes]:
    """Check run records against the schema's ``real_runs`` item, then encode each as its
    line of the truth file (see :func:`encode_run_line`).

    Lets worker processes share the cost of checking and encoding a million runs; the
    truth document then carries the lines and :func:`validate_truth` takes them as
    checked. The check goes a field at a time, without a dict a record, unless one
    breaks the schema.

    Raises
    ------
    TruthFileError
        When a record breaks the schema (a bug: the audit makes these records itself).
    """
    if not records:
        return []
    columns = list(zip(*records, strict=True))
    # JSON has no tuples: the file holds this field as a list, so check it as one.
    as_in_file = list(columns)
    position = RECORD_FIELDS.index("nonfinite_metrics")
    as_in_file[position] = [list(names) for names in columns[position]]
    item_schema = truth_schema()["properties"]["real_runs"]["items"]
    if not bulkschema.columns_conform(RECORD_FIELDS, as_in_file, item_schema):
        # jsonschema has the last word, and writes the messages.
        runs = [record.to_dict() for record in records]
        validate_truth({"real_runs": runs}, "real_runs items", partial=True)
    return run_lines(records, columns)


@functools.cache
def _number_fields() -> tuple[str, ...]:
    # The fields where the schema lets a float through: the only places a NaN could hide.
    properties = truth_schema()["properties"]["real_runs"]["items"]["properties"]
    return tuple(name for name in RECORD_FIELDS if "number" in json.dumps(properties[name]))


def encode_run_line(run: Mapping[str, Any]) -> bytes:
    """One run's line of the truth file: its object as compact JSON, in UTF-8.

    The one encoding of a run, whether the audit writes it from a record or a merge
    rewrites it from a loaded file, so that a file's sha256 can be recomputed from what
    it holds. orjson writes it several times faster than json, which took a third of the
    scan; where orjson cannot (an integer past 64 bits, a lone surrogate), json does. orjson
    would write NaN as null without a word, so a run holding one is refused first, as
    json's strict encoder refuses it. The run must conform to the schema, which lets
    floats into the number fields only.

    Raises
    ------
    ValueError
        When a number field holds NaN or an infinity, or a text a high and a low
        surrogate as two characters (the audit refuses such text before it gets here).
    """
    if not all(_finite_numbers([run.get(name)]) for name in _number_fields()):
        raise ValueError("Out of range float values are not JSON compliant")
    try:
        return orjson.dumps(run)
    except orjson.JSONEncodeError:
        return _line_by_json(run)


def run_lines(
    records: Sequence[RunRecord], columns: Sequence[Sequence[Any]] | None = None
) -> list[bytes]:
    """Each record's line of the truth file, unchecked against the schema: the bytes
    :func:`encode_run_line` gives for ``record._asdict()``, found a field at a time for
    NaN, without a Python call a record. ``columns`` are the records' fields, a field
    a column, where the caller has them already."""
    if columns is None:
        columns = list(zip(*records, strict=True))
    if records and len(columns) != len(RECORD_FIELDS):
        # All records have as many fields as there are columns (zip checked that).
        raise ValueError(f"a record has {len(columns)} fields, not {len(RECORD_FIELDS)}")
    for name in _number_fields() if records else ():
        if not _finite_numbers(columns[RECORD_FIELDS.index(name)]):
            raise ValueError(f"Out of range float values are not JSON compliant (in {name})")

    try:
        # One C call a step: each record's dict, then its JSON.
        return list(map(orjson.dumps, map(dict, map(zip, repeat(RECORD_FIELDS), records))))
    except orjson.JSONEncodeError:
        return [_encode_record_line(record) for record in records]


def _encode_record_line(record: RunRecord) -> bytes:
    try:
        return orjson.dumps(dict(zip(RECORD_FIELDS, record, strict=True)))
    except orjson.JSONEncodeError:
        return _line_by_json(record._asdict())


def _finite_numbers(values: Sequence[Any]) -> bool:
    """False when a float among ``values`` is NaN or infinite."""
    try:
        # One pass in C: a NaN or an infinity makes the sum NaN or infinite.
        total = sum(filter(None, values))
    except (TypeError, OverflowError):  # not all numbers, or an int past any float
        total = math.nan
    if isinstance(total, float) and not math.isfinite(total):
        # Or finite numbers summed past the largest float: value by value.
        return all(math.isfinite(value) for value in values if isinstance(value, float))
    return True


def _line_by_json(run: Mapping[str, Any]) -> bytes:
    text = _ONE_LINE_ENCODER.encode(run)
    if _SURROGATE_PAIR.search(text):
        # JSON writes such a pair as one character: it would not read back as it was.
        raise ValueError("a run holds a surrogate pair as two characters, which JSON cannot")
    return text.encode("utf-8", "backslashreplace")


_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def validate_truth(
    document: Mapping[str, Any], shown: str = "truth document", partial: bool = False
) -> None:
    """Check a truth document against the schema; all violations are reported together.

    A column-at-a-time check (:mod:`benchtruth_utils.bulkschema`) answers first, because
    jsonschema alone takes minutes on a million runs; only a document it does not pass
    is walked by jsonschema, which then has the last word and writes the messages.

    Raises
    ------
    TruthFileError
        Naming up to five violations, each with the JSON path where it occurs.
    """
    schema = truth_schema()
    if partial:
        # Only the given properties: the rest of the document is checked elsewhere.
        schema = {**schema, "required": [name for name in schema["required"] if name in document]}
    # Lists of encoded lines were checked when they were encoded; the rest is checked here.
    encoded = {
        name
        for name, value in document.items()
        if isinstance(value, EncodedItems) and value.property_name == name
    }
    rest = {name: value for name, value in document.items() if name not in encoded}
    schema = {**schema, "required": [name for name in schema["required"] if name not in encoded]}
    try:
        if bulkschema.conforms([rest], schema):
            return
    except bulkschema.Unsupported:
        pass

    validator = jsonschema.Draft202012Validator(schema)
    document = rest
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    if errors:
        listed = "; ".join(
            f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message[:200]}"
            for error in errors[:5]
        )
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise TruthFileError(shown, f"does not match the schema: {listed}{more}")


# A top-level key of the truth file sits at an indent of two (see iter_strict_json).
_TOP_LEVEL_HOST_TAG = re.compile(rb'^  "host_tag": ("(?:[^"\\\n]|\\.)*"),?$', re.MULTILINE)
_HEAD_BYTES = 64 * 1024


def previous_host_tag(path: str) -> str | None:
    """The host_tag of the truth file already at ``path``, or None when there is none to read.

    Read from the head of the file: a million runs' truth file takes seconds and
    gigabytes to load whole, and host_tag is among its first lines.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
        found = _TOP_LEVEL_HOST_TAG.search(head)
        if found is None:
            return None
        host_tag = json.loads(found.group(1))
    except (OSError, ValueError):
        return None
    return host_tag if isinstance(host_tag, str) else None


# The lists that grow with runs and dirs: one item a line in the file.
ONE_LINE_ITEMS = frozenset(
    {
        "real_runs",
        "superseded_runs",
        "bench_dirs",
        "excluded",
        "warnings",
        "coverage",
        "missing_runs",
        "unplanned_runs",
        "inert_factors",
        "inert_seeds",
    }
)


def truth_json_chunks(document: Mapping[str, Any]) -> Iterator[str | bytes | FileRange]:
    """The truth file's text, piece by piece, exactly as :func:`write_truth` writes it."""
    return iter_strict_json(document, ONE_LINE_ITEMS, {"real_runs": encode_run_line})


def write_truth(path: str, document: Mapping[str, Any]) -> None:
    """Validate the truth document against its schema, then write it as strict JSON, atomically."""
    publish_file(write_truth_unpublished(path, document), path)


def write_truth_unpublished(
    path: str, document: Mapping[str, Any], stop: threading.Event | None = None
) -> str:
    """:func:`write_truth` but for the last step: returns the written file's temporary name,
    for :func:`outputs.publish_file` to put in the place of ``path`` (or to discard).

    Raises
    ------
    WritingStopped
        When ``stop`` is set before the file is whole (nothing is left behind then).
    """
    validate_truth(document, os.path.basename(path))
    chunks = truth_json_chunks(document)
    return write_unpublished(path, chunks if stop is None else _until(stop, chunks))


class WritingStopped(Exception):
    """A writer was told to stop before its file was whole."""


def _until(stop: threading.Event, chunks: Iterable[Any]) -> Iterator[Any]:
    for chunk in chunks:
        if stop.is_set():
            raise WritingStopped("told to stop before the truth file was whole")
        yield chunk


def load_truth(path: str) -> dict[str, Any]:
    """Load a truth document and refuse it when it is not one this version can read.

    Raises
    ------
    TruthFileError
        When the file is missing, not strict JSON, not an object, or of an unknown version.
    """
    shown = os.path.basename(path)

    def refuse_constant(token: str) -> None:
        raise ValueError(f"non-strict JSON token {token}")

    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle, parse_constant=refuse_constant)
    except FileNotFoundError as err:
        raise TruthFileError(shown, "no such file; run 01_audit first") from err
    except (OSError, ValueError) as err:
        raise TruthFileError(shown, f"not a readable JSON document ({err})") from err
    except RecursionError as err:
        raise TruthFileError(shown, "not a readable JSON document (nested too deeply)") from err

    if not isinstance(document, dict):
        raise TruthFileError(shown, "top level is not an object")
    check_schema_version(document, shown)
    validate_truth(document, shown)
    return document
