"""The truth document: the single source of truth that every table is built from."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any

import jsonschema

from . import bulkschema
from .errors import ParameterError, TruthFileError
from .outputs import EncodedItems, atomic_write_chunks, iter_strict_json
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


def encode_items(items: Sequence[Mapping[str, Any]], property_name: str) -> EncodedItems:
    """Check items of the truth document's list ``property_name`` against its item
    schema, then encode each as the one line the truth file holds.

    Lets worker processes share the cost of checking and encoding a million runs; the
    truth document then carries the lines and :func:`validate_truth` takes them as checked.

    Raises
    ------
    TruthFileError
        When an item breaks the schema (a bug: the audit makes these items itself).
    """
    item_schema = truth_schema()["properties"][property_name]["items"]
    if not bulkschema.conforms(items, item_schema):
        validate_truth({property_name: list(items)}, f"{property_name} items", partial=True)
    return EncodedItems([_ONE_LINE_ENCODER.encode(item) for item in items], property_name)


# A run's line with a slot a field, keys in record order: the text json writes for
# ``record.to_dict()`` once each slot holds the JSON of its value.
_RUN_LINE_TEMPLATE = (
    "{" + ", ".join(f"{_ONE_LINE_ENCODER.encode(name)}: %s" for name in RECORD_FIELDS) + "}"
)
_NONE = type(None)


def _encoded_column(values: Sequence[Any]) -> list[str]:
    """The JSON text of each value of one field of many records, as ``_ONE_LINE_ENCODER``
    writes it.

    Column by column, each type's own encoder is mapped over all values at once, and a
    string that repeats (a dir's path, its sha256, a backbone) is encoded once. Encoding
    a million records field by field, the way json does, took a third of the scan.
    """
    types = set(map(type, values))
    if types == {str}:
        encoded = {text: encode_basestring(text) for text in set(values)}
        return list(map(encoded.__getitem__, values))
    if types == {float}:
        if not all(map(math.isfinite, values)):
            _ONE_LINE_ENCODER.encode(list(values))  # raises, as json does for NaN
        return list(map(float.__repr__, values))
    if types == {int}:
        return list(map(int.__repr__, values))
    if types == {bool}:
        return ["true" if value else "false" for value in values]
    if types == {tuple} and all(type(item) is str for value in values for item in value):
        # Not keyed by floats: 0.0 and -0.0 are one key of a dict but two JSON texts.
        encoded = {value: _ONE_LINE_ENCODER.encode(list(value)) for value in set(values)}
        return list(map(encoded.__getitem__, values))
    if _NONE in types:
        present = [value for value in values if value is not None]
        encoded_present = iter(_encoded_column(present)) if present else iter(())
        return ["null" if value is None else next(encoded_present) for value in values]
    # Anything rarer (mixed types): json itself, a value at a time.
    return [_ONE_LINE_ENCODER.encode(list(v) if type(v) is tuple else v) for v in values]


def encode_run_records(records: Sequence[RunRecord]) -> list[str]:
    """Check run records against the schema's ``real_runs`` item, then encode each as its
    line of the truth file (see :func:`encode_items`), all without a dict a record
    unless one breaks the schema."""
    if not records:
        return []
    columns = list(zip(*records, strict=True))
    # JSON has no tuples: the file holds this field as a list, so check it as one.
    position = RECORD_FIELDS.index("nonfinite_metrics")
    checked_columns = list(columns)
    checked_columns[position] = [list(names) for names in columns[position]]
    item_schema = truth_schema()["properties"]["real_runs"]["items"]
    if not bulkschema.columns_conform(RECORD_FIELDS, checked_columns, item_schema):
        return list(encode_items([record.to_dict() for record in records], "real_runs"))
    return run_lines(columns)


def run_lines(columns: Sequence[Sequence[Any]]) -> list[str]:
    """The truth file's lines of run records given as their columns (one a field, in
    record order), unchecked: the text ``_ONE_LINE_ENCODER`` writes for each record's dict."""
    encoded_columns = [_encoded_column(column) for column in columns]
    return [_RUN_LINE_TEMPLATE % fields for fields in zip(*encoded_columns, strict=True)]


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


def truth_json_chunks(document: Mapping[str, Any]) -> Iterator[str | bytes]:
    """The truth file's text, piece by piece, exactly as :func:`write_truth` writes it."""
    return iter_strict_json(document, ONE_LINE_ITEMS)


def write_truth(path: str, document: Mapping[str, Any]) -> None:
    """Validate the truth document against its schema, then write it as strict JSON, atomically."""
    validate_truth(document, os.path.basename(path))
    atomic_write_chunks(path, truth_json_chunks(document))


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
