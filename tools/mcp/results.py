"""``read_mcp_result``: the model reads on in an MCP result that was too big for the conversation.

A spilled result lives in the session's private folder, outside the workspace, where the file tools
(confined to the workspace) and the sandbox cannot reach. This one tool reads there and nowhere
else: resolve, then ``relative_to`` the session folder. It is offered only while an MCP server is.
"""

from __future__ import annotations

from pathlib import Path

from midstream.tools.registry import Access, Facts, Output, Tool, ToolContext, ToolError, Wording, counted, tool

__all__ = ["MAX_LINES", "result_reader"]

MAX_LINES = 400
MAX_CHARS = 40_000  # about 10,000 tokens, whatever the lines' length


class OutsideResults(PermissionError):
    """A path outside the session's MCP results: a policy boundary, not a missing file."""


def result_reader(folder: Path) -> Tool:
    """The tool that reads the spilled results under ``folder`` (the session's folder)."""

    @tool(
        wording=Wording("Reading", "Read", shown=lambda path: Path(path).name),
        access=lambda workspace, args: Access(),  # nothing of the workspace: it never waits for a call
        params={"path": "The file an MCP result said it was kept in.",
                "offset": "First line to return, counting from 1.",
                "limit": f"How many lines to return at most (default and maximum {MAX_LINES})."},
    )
    def read_mcp_result(ctx: ToolContext, path: str, offset: int = 1, limit: int = MAX_LINES) -> Output:
        """Read part of an MCP tool result that was too big for the conversation (its file is named in it)."""
        root = folder.resolve()
        target = Path(path).expanduser().resolve()
        try:
            target.relative_to(root)
        except ValueError:
            raise OutsideResults(f"Refused: {path} is not a kept MCP result. This tool reads only the files MCP "
                                 f"results name (in {root}); use read_file for the workspace.") from None
        if not target.is_file():
            raise ToolError(f"No kept MCP result at {path}.")
        offset, limit = max(1, offset), max(1, min(limit, MAX_LINES))
        shown: list[str] = []
        size = 0
        total = 0
        with target.open(encoding="utf-8", errors="replace") as file:
            for number, line in enumerate(file, start=1):
                total = number
                if offset <= number < offset + limit and size < MAX_CHARS:
                    shown.append(f"{number:6}\t{line.rstrip(chr(10))}"[:2000])
                    size += len(shown[-1])
        if not shown:
            return Output(f"(the result has {counted(total, 'line')}; nothing from line {offset})", Facts(lines=0))
        last = offset + len(shown) - 1
        more = f"\n[lines {offset}-{last} of {total:,}; read on with offset={last + 1}]" if last < total else ""
        return Output("\n".join(shown) + more, Facts(lines=len(shown), detail=counted(len(shown), "line")))

    return read_mcp_result
