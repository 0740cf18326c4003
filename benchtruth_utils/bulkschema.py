"""Checking a large document against its JSON Schema a column at a time.

jsonschema walks every value of every record one by one, at about a hundred
microseconds a run record; a truth document of a million runs would take minutes
to validate. Here a schema is applied to all values found at the same place at
once: every ``real_runs[*].rmse`` is one column, whose types are checked as a set,
whose patterns are matched once per distinct string, and so on.

This only answers "valid or not". It covers the keywords the truth schema uses and
declines (returns None) on any other, and it is never more lenient than jsonschema:
the test suite compares the two on generated documents. Messages still come from
jsonschema, run once the answer is "not valid" (see :func:`truth.validate_truth`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Keywords that only annotate: they never decide validity.
_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "$comment"})
SUPPORTED_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "pattern",
        "minLength",
        "minimum",
        "not",
        "anyOf",
        "items",
        "minItems",
        "properties",
        "required",
        "additionalProperties",
    }
)


_KNOWN_KEYWORDS = SUPPORTED_KEYWORDS | _ANNOTATIONS


class Unsupported(Exception):
    """The schema uses a keyword this checker does not implement."""


_JSON_TYPES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
    list: "array",
    dict: "object",
}


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value ("integer" for an int, "number" for a float).

    Only the exact types json.load gives are known; anything else is "other", which no
    type admits here (jsonschema may still admit it, and then settles the document).
    """
    return _JSON_TYPES.get(type(value), "other")


def _accepts_type(declared: str, value: Any, found: str) -> bool:
    if declared == found:
        return True
    if declared == "number":
        return found == "integer"
    if declared == "integer":
        # JSON Schema counts 1.0 as an integer.
        return found == "number" and value.is_integer()
    return False


def _same_json_value(left: Any, right: Any) -> bool:
    # JSON equality: true is not 1, but 1 equals 1.0.
    kinds = {json_type(left), json_type(right)}
    if "other" in kinds:
        return False
    if kinds <= {"integer", "number"}:
        return left == right
    return len(kinds) == 1 and left == right


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def conforms(values: Sequence[Any], schema: Mapping[str, Any] | bool) -> bool:
    """Whether every value of ``values`` is valid against ``schema``.

    Raises
    ------
    Unsupported
        When the schema uses a keyword outside :data:`SUPPORTED_KEYWORDS`.
    """
    if schema is True or not values:
        return True
    if schema is False:
        return False

    if not schema.keys() <= _KNOWN_KEYWORDS:
        raise Unsupported(", ".join(sorted(schema.keys() - _KNOWN_KEYWORDS)))

    if "type" in schema and not _types_conform(values, schema["type"]):
        return False
    if "enum" in schema and not _all_in(values, schema["enum"]):
        return False
    if "const" in schema and not _all_in(values, [schema["const"]]):
        return False
    if "anyOf" in schema and not _any_of_conforms(values, schema["anyOf"]):
        return False
    if "not" in schema and not _none_conform(values, schema["not"]):
        return False

    if "minLength" in schema or "pattern" in schema:
        strings = _distinct_strings(values)
        if strings and not _strings_conform(strings, schema):
            return False
    if "minimum" in schema:
        numbers = [value for value in values if type(value) is int or type(value) is float]
        # Value by value, as jsonschema compares: min() of a column holding NaN may be NaN.
        minimum = schema["minimum"]
        if any(number < minimum for number in numbers):
            return False
    if "items" in schema or "minItems" in schema:
        arrays = [value for value in values if type(value) is list]
        if arrays and not _arrays_conform(arrays, schema):
            return False
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        objects = [value for value in values if type(value) is dict]
        if objects and not _objects_conform(objects, schema):
            return False
    return True


@functools.lru_cache(maxsize=64)
def _python_types_of(declared: str | tuple[str, ...]) -> frozenset[type]:
    """The Python types whose values every one of the ``declared`` JSON types admits
    (a float is an integer only when integral, so it is left to the value check)."""
    declared_types = {declared} if isinstance(declared, str) else set(declared)
    if "number" in declared_types:
        declared_types.add("integer")
    return frozenset(kind for kind, name in _JSON_TYPES.items() if name in declared_types)


def _types_conform(values: Sequence[Any], declared: str | list[str]) -> bool:
    kinds = set(map(type, values))
    hashable = declared if isinstance(declared, str) else tuple(declared)
    if kinds <= _python_types_of(hashable):
        # The usual answer, found without looking at any value twice.
        return True

    declared_types = [declared] if isinstance(declared, str) else list(declared)
    for kind in kinds:
        found = _JSON_TYPES.get(kind, "other")
        if found in declared_types or (found == "integer" and "number" in declared_types):
            continue
        integral = found == "number" and "integer" in declared_types
        if not (integral and all(v.is_integer() for v in values if type(v) is float)):
            return False
    return True


def _all_in(values: Sequence[Any], allowed: Sequence[Any]) -> bool:
    try:
        # Keyed by type too: a set holds only one of 1 and True, which JSON tells apart.
        typed = set(zip(map(type, values), values, strict=True))
    except TypeError:
        distinct = list(values)
    else:
        if typed <= _typed_choices(allowed):
            # Each value is a choice of the same type: equal in JSON too.
            return True
        distinct = [value for _, value in typed]
    return all(any(_same_json_value(value, choice) for choice in allowed) for value in distinct)


def _typed_choices(allowed: Sequence[Any]) -> set[tuple[type, Any]]:
    """The scalar choices of an enum, each with its type (see :func:`_all_in`): for them,
    equal with the same type is equal in JSON. Any other choice is left to the slow path."""
    return {(type(choice), choice) for choice in allowed if type(choice) in _SCALAR_TYPES}


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_STR_ONLY = {str}


def _any_of_conforms(values: Sequence[Any], branches: Sequence[Mapping[str, Any]]) -> bool:
    # Values go to the branches whose declared type admits them. Where one branch alone
    # admits a value, that branch judges all such values at once; the rest one by one.
    by_candidates: dict[tuple[int, ...], list[Any]] = {}
    for value in values:
        found = json_type(value)
        candidates = tuple(
            index
            for index, branch in enumerate(branches)
            if "type" not in branch or _type_list_accepts(branch["type"], value, found)
        )
        by_candidates.setdefault(candidates, []).append(value)

    for candidates, members in by_candidates.items():
        if not candidates:
            return False
        if len(candidates) == 1:
            if not conforms(members, branches[candidates[0]]):
                return False
            continue
        for value in members:
            if not any(conforms([value], branches[index]) for index in candidates):
                return False
    return True


def _type_list_accepts(declared: str | list[str], value: Any, found: str) -> bool:
    declared_types = [declared] if isinstance(declared, str) else declared
    return any(_accepts_type(declared_type, value, found) for declared_type in declared_types)


def _none_conform(values: Sequence[Any], schema: Mapping[str, Any]) -> bool:
    if set(schema) - _ANNOTATIONS == {"pattern"}:
        # A pattern only judges strings: any other value satisfies it, so fails "not".
        pattern = _compiled(schema["pattern"])
        return all(type(value) is str and not pattern.search(value) for value in set_of(values))
    return all(not conforms([value], schema) for value in values)


def set_of(values: Sequence[Any]) -> Iterable[Any]:
    """Distinct values where they can be hashed, every value where they cannot."""
    try:
        return set(values)
    except TypeError:
        return values


def _distinct_strings(values: Sequence[Any]) -> list[str]:
    """The values that are strings (str or a subclass, as jsonschema has it), each once.

    Deduplicated with their types, so that no value equal to a string can stand in for
    it: a column repeats a few strings many times.
    """
    if set(map(type, values)) == _STR_ONLY:
        # The usual column: plain strings, which are equal only when they are the same text.
        return list(set(values))
    try:
        typed = set(zip(map(type, values), values, strict=True))
    except TypeError:  # an unhashable value among them
        return [value for value in values if isinstance(value, str)]
    return [value for kind, value in typed if issubclass(kind, str)]


def _strings_conform(strings: Iterable[str], schema: Mapping[str, Any]) -> bool:
    if "minLength" in schema and any(len(text) < schema["minLength"] for text in strings):
        return False
    if "pattern" in schema:
        pattern = _compiled(schema["pattern"])
        return all(pattern.search(text) for text in strings)
    return True


def _arrays_conform(arrays: Sequence[list[Any]], schema: Mapping[str, Any]) -> bool:
    if "minItems" in schema and any(len(array) < schema["minItems"] for array in arrays):
        return False
    if "items" not in schema:
        return True
    elements = [element for array in arrays for element in array]
    return conforms(elements, schema["items"])


def _objects_conform(objects: Sequence[dict[str, Any]], schema: Mapping[str, Any]) -> bool:
    required = schema.get("required", ())
    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties", True)

    # Records of one kind share one key set; check each distinct key set once.
    key_sets = {tuple(item) for item in objects}
    extra_names: set[str] = set()
    for keys in key_sets:
        present = set(keys)
        if any(name not in present for name in required):
            return False
        extra_names |= present - set(properties)
    if extra_names and additional is False:
        return False

    for name, subschema in properties.items():
        column = [item[name] for item in objects if name in item]
        if not conforms(column, subschema):
            return False
    if extra_names and additional is not True:
        column = [item[name] for item in objects for name in extra_names if name in item]
        return conforms(column, additional)
    return True


def columns_conform(
    names: Sequence[str], columns: Sequence[Sequence[Any]], schema: Mapping[str, Any]
) -> bool:
    """Whether the objects that ``columns`` hold are valid: object ``i`` has, for each of
    ``names``, the value at ``columns[k][i]``.

    The same verdict as :func:`conforms` on those objects, without making them: they all
    have the same keys, so the keys are checked once, and each column as a whole.
    """
    if not columns or not columns[0]:
        return True
    unknown = set(schema) - SUPPORTED_KEYWORDS - _ANNOTATIONS
    if unknown:
        raise Unsupported(", ".join(sorted(unknown)))
    if "type" in schema and not _type_list_accepts(schema["type"], {}, "object"):
        return False
    if {"enum", "const", "anyOf", "not"} & set(schema):
        # Rare at the level of whole records; judge them as the dicts they stand for.
        objects = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        return conforms(objects, schema)

    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties", True)
    if any(name not in names for name in schema.get("required", ())):
        return False
    extra_names = [name for name in names if name not in properties]
    if extra_names and additional is False:
        return False

    by_name = dict(zip(names, columns, strict=True))
    for name, subschema in properties.items():
        if name in by_name and not conforms(by_name[name], subschema):
            return False
    return all(conforms(by_name[name], additional) for name in extra_names)
