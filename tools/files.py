"""File tools: read, write, edit. Every path goes through the sandbox's confinement first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox.paths import confine, display_path
from tools.registry import Access, ToolContext, ToolError, tool, workspace_key

__all__ = ["read_file"]

READ_MAX_LINES = 2000
READ_MAX_BYTES = 256 * 1024
READ_MAX_LINE_CHARS = 2000
_SNIFF_BYTES = 8192


def _reads_path(workspace: Path, args: dict[str, Any]) -> Access:
    return Access.reading(workspace_key(workspace, str(args.get("path", "."))))


def is_binary(path: Path) -> bool:
    """A NUL byte near the start is how git and grep decide, and so do we."""
    with path.open("rb") as f:
        return b"\0" in f.read(_SNIFF_BYTES)


@tool(
    status=lambda args: f"Reading {args.get('path', '…')}",
    access=_reads_path,
    params={
        "path": "File path, relative to the workspace root.",
        "offset": "First line to return, counting from 1.",
        "limit": f"How many lines to return at most (default and maximum {READ_MAX_LINES}).",
    },
)
def read_file(ctx: ToolContext, path: str, offset: int = 1, limit: int = READ_MAX_LINES) -> str:
    """Read a text file and return its lines numbered like `cat -n`.

    Long files are returned a page at a time; the result says how to read the next page.
    """
    target = confine(ctx.workspace, path)
    shown = display_path(ctx.workspace, target)
    if not target.exists():
        raise ToolError(f"{shown} does not exist.")
    if target.is_dir():
        raise ToolError(f"{shown} is a directory; use list_dir to see what it holds.")
    if offset < 1 or limit < 1:
        raise ToolError("offset and limit must be at least 1.")
    size = target.stat().st_size
    if is_binary(target):
        raise ToolError(f"{shown} is a binary file ({size:,} bytes); its contents are not shown.")
    limit = min(limit, READ_MAX_LINES)
    out: list[str] = []
    used = 0
    number = 0
    more = False
    with target.open(encoding="utf-8", errors="replace", newline="") as f:
        for number, line in enumerate(f, start=1):
            if number < offset:
                continue
            if len(out) >= limit or used >= READ_MAX_BYTES:
                more = True
                break
            text = line.rstrip("\r\n")
            if len(text) > READ_MAX_LINE_CHARS:
                text = text[:READ_MAX_LINE_CHARS] + f"… [line cut at {READ_MAX_LINE_CHARS} characters]"
            entry = f"{number:6}\t{text}"
            out.append(entry)
            used += len(entry) + 1
    if not out:
        if size == 0:
            return f"{shown} is empty."
        raise ToolError(f"{shown} has {number} lines; offset {offset} is past the end.")
    body = "\n".join(out)
    if more:
        next_line = offset + len(out)
        body += (
            f"\n[{shown}: showed lines {offset}-{next_line - 1}. "
            f"More follows: call read_file with offset={next_line} to continue.]"
        )
    return body
