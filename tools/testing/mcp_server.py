"""An MCP server written with the official SDK, for the tests and the benchmark: stdio or Streamable HTTP.

Tools: ``slow(n)`` reports progress n times and writes a marker when it sees the cancellation,
``echo(text)``, ``big(kb)``, ``fail()``, ``hang()`` (until cancelled, marker too), ``peek()`` (a
read-only one), ``picture()`` (an image), ``crash()`` (the process dies mid-call). Every
``tools/call`` that arrives is appended to the log file (``call NAME TIME`` with the wall-clock
time, shared between processes), and each cancellation seen (``cancelled NAME``), so a test proves
what the server received.

    python -m midstream.tools.testing.mcp_server --log FILE [--transport http --port N]
        [--sleep-before-start S] [--step S]

``--sleep-before-start`` keeps the process alive but silent (a slow ``initialize``).
"""

from __future__ import annotations

import argparse
import base64
import time
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ImageContent, ToolAnnotations

__all__ = ["build", "main"]

# A 1x1 PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def build(log: Path, step: float) -> MCPServer:
    server = MCPServer("midstream-test")

    def note(line: str) -> None:
        with log.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    async def until_cancelled(name: str, work: object) -> str:
        try:
            return await work  # type: ignore[misc]
        except anyio.get_cancelled_exc_class():
            note(f"cancelled {name} {time.time():.6f}")
            raise

    @server.tool()
    async def slow(n: int, ctx: Context) -> str:
        """Count to n slowly, reporting progress at each step."""
        note(f"call slow {time.time():.6f}")

        async def work() -> str:
            for i in range(1, n + 1):
                await anyio.sleep(step)
                await ctx.report_progress(i, n, "indexing")
            return f"counted to {n}"

        return await until_cancelled("slow", work())

    @server.tool()
    def echo(text: str) -> str:
        """Say the text back."""
        note(f"call echo {time.time():.6f}")
        return text

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def peek(text: str = "") -> str:
        """A read-only look at nothing in particular."""
        note(f"call peek {time.time():.6f}")
        return f"peeked {text}"

    @server.tool()
    def big(kb: int) -> str:
        """Return kb kilobytes of numbered text lines."""
        note(f"call big {time.time():.6f}")
        line = "0123456789abcdef" * 4 + "\n"  # 65 bytes
        return "".join(f"{i:08d} {line}" for i in range(kb * 1024 // 74 + 1))[: kb * 1024]

    @server.tool()
    def fail() -> str:
        """Always fail."""
        note(f"call fail {time.time():.6f}")
        raise ToolError("it failed on purpose")

    @server.tool()
    async def hang() -> str:
        """Never answer."""
        note(f"call hang {time.time():.6f}")
        return await until_cancelled("hang", anyio.sleep_forever())

    @server.tool()
    def crash() -> str:
        """Die in the middle of the call."""
        note(f"call crash {time.time():.6f}")
        import os
        import sys

        sys.stderr.write("crashing on purpose\n")
        sys.stderr.flush()
        os._exit(7)

    @server.tool()
    def picture() -> list[ImageContent]:
        """A tiny picture."""
        note(f"call picture {time.time():.6f}")
        return [ImageContent(type="image", data=base64.b64encode(PIXEL).decode(), mime_type="image/png")]

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--step", type=float, default=0.2)
    parser.add_argument("--sleep-before-start", type=float, default=0.0)
    args = parser.parse_args()
    time.sleep(args.sleep_before_start)
    server = build(args.log, args.step)
    if args.transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
