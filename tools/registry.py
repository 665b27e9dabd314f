"""Tools as plain typed functions, and the registry the loop asks for schemas and callables.

A tool is a function ``f(ctx, **params) -> str`` whose first docstring line is what the model
reads. Its input schema is derived from the signature, so the two cannot drift apart. Beside it
sit what the scheduler and the status line need: which paths a call reads and writes, a status
phrase ("Reading src/app.py"), and whether a call is destructive.

Failures are data (``ToolResult(is_error=True)``): a tool raises ``ToolError`` for a failure the
model should act on; any other exception is reported too, never raised into the loop.
"""

from __future__ import annotations

import inspect
import os
import threading
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "Access",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolSource",
    "tool",
]


class ToolError(Exception):
    """A failure the model can act on; its message becomes an error tool_result."""


@dataclass(frozen=True)
class ToolResult:
    """What goes back to the model as one tool_result block."""

    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Access:
    """Workspace-relative paths a call reads and writes; "." stands for the whole workspace.

    Two calls conflict when one writes what the other reads or writes. A path covers everything
    below it, so a write to "src" conflicts with a read of "src/app.py".
    """

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()

    WHOLE = "."

    @classmethod
    def reading(cls, *paths: str) -> Access:
        return cls(reads=frozenset(paths))

    @classmethod
    def writing(cls, *paths: str) -> Access:
        return cls(writes=frozenset(paths))

    @classmethod
    def whole_workspace(cls, *, read_only: bool) -> Access:
        if read_only:
            return cls(reads=frozenset({cls.WHOLE}))
        return cls(writes=frozenset({cls.WHOLE}))

    def conflicts_with(self, other: Access) -> bool:
        return (
            _overlap(self.writes, other.writes | other.reads)
            or _overlap(self.reads, other.writes)
        )


def _covers(a: str, b: str) -> bool:
    return a == Access.WHOLE or b == Access.WHOLE or a == b or b.startswith(a + "/") or a.startswith(b + "/")


def _overlap(xs: Iterable[str], ys: Iterable[str]) -> bool:
    ys = list(ys)
    return any(_covers(x, y) for x in xs for y in ys)


def workspace_key(workspace: Path, path: str) -> str:
    """Normalise a path the model gave into the key the scheduler compares.

    This is only for ordering; confinement is enforced when the tool runs.
    """
    joined = os.path.normpath(os.path.join(workspace, os.path.expanduser(path)))
    rel = os.path.relpath(joined, workspace)
    return Access.WHOLE if rel == "." else rel.replace(os.sep, "/")


@dataclass
class ToolContext:
    """What a running tool may use besides its input."""

    workspace: Path
    report_progress: Callable[[str], None] = lambda line: None
    before_write: Callable[[Path], None] = lambda path: None  # the undo journal's hook
    cancelled: threading.Event = field(default_factory=threading.Event)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with what the scheduler and the status line need."""

    name: str
    function: Callable[..., str]
    description: str
    input_schema: dict[str, Any]
    access: Callable[[Path, dict[str, Any]], Access]
    status: Callable[[dict[str, Any]], str]
    destructive: Callable[[Path, dict[str, Any]], bool] = lambda workspace, args: False
    journaled: bool = False  # its writes go through ctx.before_write, so a rollback can undo them

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        """Call the function; every failure comes back as an error result."""
        try:
            return ToolResult(self.function(ctx, **args))
        except ToolError as exc:
            return ToolResult(str(exc), is_error=True)
        except PermissionError as exc:
            return ToolResult(str(exc), is_error=True)
        except Exception as exc:  # a tool bug must not take the turn down with it
            return ToolResult(f"{self.name} failed: {type(exc).__name__}: {exc}", is_error=True)


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


def _schema_from_signature(function: Callable[..., str], params: dict[str, str]) -> dict[str, Any]:
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


def tool(
    *,
    status: Callable[[dict[str, Any]], str],
    access: Callable[[Path, dict[str, Any]], Access],
    params: dict[str, str] | None = None,
    destructive: Callable[[Path, dict[str, Any]], bool] | None = None,
    name: str | None = None,
    journaled: bool = False,
) -> Callable[[Callable[..., str]], Tool]:
    """Turn a typed function into a Tool; the docstring is the description the model reads."""

    def wrap(function: Callable[..., str]) -> Tool:
        return Tool(
            name=name or function.__name__,
            function=function,
            description=inspect.cleandoc(function.__doc__ or ""),
            input_schema=_schema_from_signature(function, params or {}),
            access=access,
            status=status,
            destructive=destructive or (lambda workspace, args: False),
            journaled=journaled,
        )

    return wrap


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


class ToolSource(Protocol):
    """Tools that come and go with something outside midstream (MCP servers): asked between turns."""

    def tools_for_turn(self, stop: Callable[[], bool]) -> list[Tool]: ...


class ToolRegistry:
    """The tools the model may call, in a stable order (stable bytes keep the prompt cache warm).

    Built-ins come first, sorted; a source's tools follow them, sorted, and change only when
    ``between_turns`` is called (the loop does so before each user message), so the tools a request
    carries never change within a turn and the prompt cache breaks at most once when a source grows.
    """

    def __init__(self, tools: Iterable[Tool], sources: Iterable[ToolSource] = ()) -> None:
        self._builtin = {t.name: t for t in sorted(tools, key=lambda t: t.name)}
        self._sources = list(sources)
        self._tools = dict(self._builtin)

    def add_source(self, source: ToolSource) -> None:
        self._sources.append(source)

    @property
    def sources(self) -> tuple[ToolSource, ...]:
        return tuple(self._sources)

    def between_turns(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Let the sources' tools join (or leave); ``stop`` ends a wait for them early (Ctrl-C)."""
        if not self._sources:
            return
        joined = sorted((t for s in self._sources for t in s.tools_for_turn(stop) if t.name not in self._builtin),
                        key=lambda t: t.name)
        tools = {**self._builtin, **{t.name: t for t in joined}}
        if list(tools.items()) != list(self._tools.items()):
            self._tools = tools  # one assignment: tool threads reading get() see the old or the new table

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self._tools.values()]

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def check(self, name: str, args: Any) -> str | None:
        """Why this call cannot run (unknown tool, bad input), or None when it can."""
        found = self._tools.get(name)
        if found is None:
            return f"Unknown tool '{name}'. The available tools are: {', '.join(self._tools)}."
        problems = validate(found.input_schema, args)
        if problems:
            return f"Invalid input for {name}: " + "; ".join(problems) + ". Fix the input and call it again."
        return None
