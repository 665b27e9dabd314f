"""An MCP server's tool as a midstream Tool: named ``mcp__<server>__<tool>``, with the server's schema.

It is ordered like any call: a writer of the whole workspace (it waits for, and blocks, every
other call), unless the person marked the server ``trusted`` and the tool declares
``readOnlyHint``; an untrusted server's annotations are hints only. The gate reads the same
access, so ask mode asks for it (with "always" for that tool) and read-only mode runs only
trusted read-only tools.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from midstream.tools.registry import Access, Judgement, Output, Tool, ToolContext, Wording

__all__ = ["as_tool", "tool_name"]

DESCRIPTION_CHARS = 2_000  # a server's essay of a description must not fill the prompt
_INVALID = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str) -> str:
    """``mcp__<server>__<tool>`` in the characters and length (64) every provider accepts."""
    name = f"mcp__{_INVALID.sub('_', server)}__{_INVALID.sub('_', tool)}"
    if len(name) <= 64:
        return name
    return name[:55] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


def as_tool(server: str, listed: Any, *, trusted: bool,
            run: Callable[[ToolContext, dict[str, Any]], Output]) -> Tool:
    """The Tool for one listed MCP tool; ``run`` makes the call (and raises ToolError for a failure)."""
    read_only = trusted and bool(listed.annotations and listed.annotations.read_only_hint)
    judgement = Judgement(Access.reading(Access.WHOLE) if read_only else Access.whole_workspace(read_only=False))
    description = " ".join((listed.description or "").split())
    if len(description) > DESCRIPTION_CHARS:
        description = description[: DESCRIPTION_CHARS - 1] + "…"

    def function(ctx: ToolContext, /, **args: Any) -> Output:  # positional ctx: an argument may be named "ctx"
        return run(ctx, args)

    return Tool(
        name=tool_name(server, listed.name),
        function=function,
        description=f"(MCP server {server}) {description}".strip(),
        input_schema=_object_schema(listed.input_schema),
        judge=lambda workspace, args: judgement,
        wording=Wording("Calling", "Called", words=lambda args: f"{listed.name} on {server}"),
    )


def _object_schema(schema: Any) -> dict[str, Any]:
    """The server's schema where it is a usable object schema; the API refuses any other root."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return {"type": "object", "properties": {}}
    fixed = dict(schema)
    properties = fixed.get("properties")
    if not isinstance(properties, dict) or not all(isinstance(p, dict) for p in properties.values()):
        fixed["properties"] = {}
        fixed.pop("required", None)
    required = fixed.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        fixed.pop("required")
    return fixed
