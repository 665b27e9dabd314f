"""A tool's input schema, derived from its function's signature, and the check of a call's input.

The schema is what the model reads; deriving it from the typed signature means the two cannot drift
apart. ``validate`` checks the flat schemas our tools declare, so a bad call gets an error result
naming what is wrong instead of reaching the tool.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["schema_from_signature", "validate"]


_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _json_type(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _json_type(options[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _json_type(item)}
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    raise TypeError(f"no JSON schema type for {annotation!r}")


def schema_from_signature(function: Callable[..., Any], params: dict[str, str]) -> dict[str, Any]:
    hints = typing.get_type_hints(function)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, parameter in list(inspect.signature(function).parameters.items())[1:]:  # skip ctx
        prop = _json_type(hints[name])
        if name in params:
            prop["description"] = params[name]
        properties[name] = prop
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
    missing = set(params) - set(properties)
    if missing:
        raise TypeError(f"{function.__name__}: documented parameters not in the signature: {missing}")
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    match schema.get("type"):
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "array":
            return isinstance(value, list) and all(_type_ok(v, schema.get("items", {})) for v in value)
        case "object":
            return isinstance(value, dict)
    return True


def validate(schema: dict[str, Any], args: Any) -> list[str]:
    """Check input against the (flat) schemas our tools declare; return what is wrong."""
    if not isinstance(args, dict):
        return [f"input must be a JSON object, got {type(args).__name__}"]
    properties = schema.get("properties", {})
    problems = [f"missing required field '{name}'" for name in schema.get("required", []) if name not in args]
    for key, value in args.items():
        if key not in properties:
            if schema.get("additionalProperties") is False:
                problems.append(f"unknown field '{key}' (allowed: {', '.join(properties)})")
            continue
        if not _type_ok(value, properties[key]):
            expected = properties[key]["type"]
            problems.append(f"field '{key}' must be of type {expected}, got {type(value).__name__}")
    return problems
