"""One event-loop thread owns every MCP server; the tool threads submit calls to it.

The SDK is anyio-based, and an anyio cancel scope must be left by the task that entered it. So
each server has one long-lived owner task on the loop thread that enters its transport and
session and stays inside them until midstream closes; each call is a task of its own, with its
own cancel scope. Stopping a call cancels that task: the SDK then sends the server
``notifications/cancelled`` and the session (and the server's process) go on as before.

``tool_timeout`` is an idle timeout, moved forward by every progress notification, under an
absolute cap (``tool_timeout_max``). The SDK's own read timeout is never used: progress does not
reset it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midstream.sandbox.private import private_file
from midstream.tools.mcp.config import ServerSpec, server_environment

__all__ = ["Connection", "Loop", "Outcome"]

POLL = 0.02  # how often a waiting tool thread looks at its call's cancelled event
Progress = Callable[[float, float | None, str | None], None]


@dataclass(frozen=True)
class Outcome:
    """How one call ended: a result, an error, or stopped (by the person, or a timeout)."""

    seconds: float
    result: Any = None  # mcp_types.CallToolResult
    error: str | None = None
    stopped: str | None = None  # "person", "idle" or "cap"


class Connection:
    """One server as the rest of midstream sees it; the session inside belongs to the loop thread."""

    def __init__(self, spec: ServerSpec, deadline: float) -> None:
        self.spec = spec
        self.deadline = deadline  # time.monotonic() by which it must be ready
        self.state = "starting"  # starting | ready | failed | stopped
        self.error = ""
        self.tools: list[Any] = []  # mcp_types.Tool, as listed
        self.settled = threading.Event()  # ready or failed
        self.stderr: Path | None = None
        self._session: Any = None
        self._owner: Future[None] | None = None

    def fail(self, why: str) -> None:
        if self.state in ("starting", "ready"):
            self.state, self.error = "failed", why
        self.settled.set()

    def stderr_tail(self) -> str:
        """The server's last line on stderr: usually why it died."""
        if self.stderr is None:
            return ""
        try:
            lines = [line.strip() for line in self.stderr.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""


class Loop:
    """The thread with the event loop; started on first use, off the path to the prompt."""

    def __init__(self) -> None:
        self._exits = ExitStack()
        self._portal: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._portal is None:
                # The SDK's import takes seconds on a loaded machine: here, not on the loop thread.
                import mcp.client.session  # noqa: F401
                import mcp.client.stdio  # noqa: F401
                import mcp.client.streamable_http  # noqa: F401
                from anyio.from_thread import start_blocking_portal

                self._portal = self._exits.enter_context(start_blocking_portal(name="mcp-loop"))

    def connect(self, conn: Connection, *, environ: dict[str, str], workspace: Path, stderr: Path) -> None:
        """Start the owner task of ``conn``; it settles ready or failed by its deadline."""
        self.start()
        conn.stderr = stderr
        conn._owner = self._portal.start_task_soon(self._own, conn, environ, workspace)

    def call(self, conn: Connection, name: str, args: dict[str, Any], *, progress: Progress,
             cancelled: threading.Event) -> Outcome:
        """Make one tools/call from a tool thread; returns as soon as ``cancelled`` is set."""
        started = time.monotonic()
        future = self._portal.start_task_soon(self._call, conn, name, args, progress)
        while True:
            try:
                return future.result(timeout=POLL)
            except FutureTimeout:
                if cancelled.is_set() and future.cancel():  # the SDK sends notifications/cancelled
                    return Outcome(time.monotonic() - started, stopped="person")
            except CancelledError:  # closed under us
                return Outcome(time.monotonic() - started, stopped="person")
            except Exception as error:  # the SDK's errors, the transport's: the model gets a line
                if _connection_closed(error):
                    conn.fail(f"the connection closed ({conn.stderr_tail() or 'no word on stderr'})")
                return Outcome(time.monotonic() - started, error=_describe(error))

    def stop(self, conn: Connection) -> None:
        """Leave one server's session (its process gets stdin closed, then the SDK's escalation)."""
        if conn._owner is not None:
            conn._owner.cancel()
        if conn.state in ("starting", "ready"):  # a failure stays what it was
            conn.state = "stopped"
        conn.settled.set()

    def close(self) -> None:
        """Stop every server and the thread; the SDK bounds each server's shutdown."""
        with self._lock:
            if self._portal is not None:
                try:
                    self._portal.call(self._portal.stop, True)
                finally:
                    self._exits.close()
                    self._portal = None

    # -- on the loop thread -----------------------------------------------------------------------

    async def _own(self, conn: Connection, environ: dict[str, str], workspace: Path) -> None:
        import anyio

        spec = conn.spec
        with anyio.CancelScope() as scope:
            scope.deadline = anyio.current_time() + max(0.0, conn.deadline - time.monotonic())
            try:
                async with AsyncExitStack() as stack:
                    session = await self._open(stack, spec, environ, workspace, conn.stderr)
                    await session.initialize()
                    tools = await _listed_tools(session)
                    scope.deadline = math.inf  # connected: from here it lives until midstream closes
                    conn._session, conn.tools, conn.state = session, tools, "ready"
                    conn.settled.set()
                    await anyio.sleep_forever()
            except Exception as error:
                tail = conn.stderr_tail() if spec.transport == "stdio" else ""
                why = "it closed the connection while starting" if _connection_closed(error) else _describe(error)
                conn.fail(why + (f" (stderr: {tail})" if tail else ""))
        if conn.state == "starting":
            conn.fail(f"did not start within {spec.startup_timeout:g} s")
        elif conn.state == "ready":
            conn.state = "stopped"
        conn.settled.set()

    async def _open(self, stack: AsyncExitStack, spec: ServerSpec, environ: dict[str, str], workspace: Path,
                    stderr: Path | None) -> Any:
        import mcp_types
        from mcp.client.session import ClientSession

        if spec.transport == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client

            assert spec.command is not None and stderr is not None
            errlog = stack.enter_context(os.fdopen(private_file(stderr), "a", encoding="utf-8"))
            params = StdioServerParameters(command=spec.command, args=list(spec.args),
                                           env=server_environment(spec, environ), cwd=spec.cwd or workspace)
            read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            assert spec.url is not None
            # Reads wait as long as a call may go quiet (our idle timeout decides, not httpx's).
            quiet = max(300.0, spec.tool_timeout + 30.0)
            client = await stack.enter_async_context(
                httpx2.AsyncClient(headers=spec.headers, timeout=httpx2.Timeout(30.0, read=quiet)))
            read, write = await stack.enter_async_context(streamable_http_client(spec.url, http_client=client))
        info = mcp_types.Implementation(name="midstream", version="0.1")
        return await stack.enter_async_context(ClientSession(read, write, client_info=info))

    async def _call(self, conn: Connection, name: str, args: dict[str, Any], progress: Progress) -> Outcome:
        import anyio

        session, spec = conn._session, conn.spec
        if session is None or conn.state != "ready":
            return Outcome(0.0, error=f"MCP server {spec.name!r} is {conn.state}: {conn.error or 'not connected'}")
        started = anyio.current_time()
        cap = started + spec.tool_timeout_max
        with anyio.CancelScope(deadline=min(started + spec.tool_timeout, cap)) as scope:

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                scope.deadline = min(anyio.current_time() + spec.tool_timeout, cap)  # alive: idle time starts over
                progress(done, total, message)

            result = await session.call_tool(name, args, progress_callback=on_progress)
            return Outcome(anyio.current_time() - started, result=result)
        now = anyio.current_time()
        return Outcome(now - started, stopped="cap" if now >= cap else "idle")


async def _listed_tools(session: Any) -> list[Any]:
    """Every page of tools/list (a server that pages forever is cut off at 100 pages)."""
    tools: list[Any] = []
    cursor = None
    for _ in range(100):
        if cursor is None:
            page = await session.list_tools()
        else:
            import mcp_types

            page = await session.list_tools(params=mcp_types.PaginatedRequestParams(cursor=cursor))
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    leaf = _leaf(error)
    text = str(leaf).strip() or type(leaf).__name__
    if isinstance(leaf, OSError) and leaf.strerror:
        text = f"{leaf.strerror}: {leaf.filename}" if leaf.filename else leaf.strerror
    return " ".join(text.split())[:300]


def _connection_closed(error: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    leaf = _leaf(error)
    return isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED
