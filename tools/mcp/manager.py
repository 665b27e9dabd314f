"""Every configured MCP server: started in the background, joined between turns, stopped at exit.

``start()`` returns at once: the SDK is imported and the servers connect, in parallel, on other
threads. The first turn waits only for servers still starting, each at most until its startup
deadline; a server that failed is one line. Tools join the registry only between turns
(``tools_for_turn``), sorted after the built-ins, so the prompt cache breaks at most once per
server that comes up. ``/mcp`` reads ``describe()`` and approves a project server with ``approve``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from midstream.tools.mcp.adapter import as_tool
from midstream.tools.mcp.approvals import Approvals
from midstream.tools.mcp.config import ServerSpec
from midstream.tools.mcp.output import as_text
from midstream.tools.mcp.results import result_reader
from midstream.tools.mcp.runtime import Connection, Loop
from midstream.tools.registry import Facts, Output, Tool, ToolContext, ToolError

__all__ = ["McpServers", "printable", "progress_line"]

SETTLE_SLACK = 0.5  # after a deadline, the owner task needs a moment to record the failure


def printable(text: str) -> str:
    """A server's words as they may reach the terminal: no escape sequences, no control characters."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def progress_line(done: float, total: float | None, message: str | None) -> str:
    """``indexing 6/10 (60%)``, ``indexing 6``, or ``6/10 (60%)``."""
    count = f"{done:g}/{total:g} ({done / total:.0%})" if total else f"{done:g}"
    words = " ".join((message or "").split())[:120]  # a server's essay must not become the status line
    return f"{words} {count}" if words else count


class McpServers:
    """The servers of one session; thread-safe where the tool threads reach it (``_run``)."""

    def __init__(self, specs: Sequence[ServerSpec], *, workspace: Path, session_dir: Path, headless: bool,
                 approvals: Approvals, environ: Mapping[str, str], say: Callable[[str], None]) -> None:
        self.workspace = workspace
        self.session_dir = session_dir
        self._approvals = approvals
        self._environ = dict(environ)
        self._say = lambda line: say(printable(line))  # errors quote a server's stderr
        self._loop = Loop()
        self._specs = {spec.name: spec for spec in specs}
        self._connections: dict[str, Connection] = {}
        self._held: dict[str, str] = {}  # name -> why it is not started (approval, -p, disabled)
        self._told: set[str] = set()  # failures already said
        self._to_wait: list[str] = []  # servers the next turn waits for: all at first, then each one approved
        self._tools: dict[str, list[Tool]] = {}  # per ready server, made once
        self._reader: Tool | None = None
        self._lock = threading.Lock()
        for spec in specs:
            if not spec.enabled:
                self._held[spec.name] = "disabled"
            elif spec.project and headless and not spec.named:
                self._held[spec.name] = "skipped: project servers do not start in -p (pass it with --mcp-config)"
            elif spec.project and not approvals.approved(spec.digest(workspace)):
                self._held[spec.name] = f"not approved: /mcp approve {spec.name} starts it"

    @property
    def required(self) -> list[str]:
        """Servers the start waits for; a project server waiting for approval is not among them, or a
        repository could keep the person from ever reaching the prompt that approves it."""
        return [name for name, spec in self._specs.items() if spec.required and name not in self._held]

    def held_line(self) -> str | None:
        """One line for the start: project servers waiting for approval, or skipped in -p."""
        skipped = [n for n, why in self._held.items() if why.startswith("skipped")]
        waiting = [n for n, why in self._held.items() if why.startswith("not approved")]
        if skipped:
            return (f"MCP: project server{'s' * (len(skipped) > 1)} {_names(skipped)} not started in -p "
                    "(only servers given with --mcp-config start without the person)")
        if waiting:
            return (f"MCP: project server{'s' * (len(waiting) > 1)} {_names(waiting)} from this repository "
                    "not approved yet: /mcp shows what they run, /mcp approve NAME starts one")
        return None

    def start(self) -> None:
        """Connect every server that may start, in the background; returns at once."""
        starting = [spec for name, spec in self._specs.items() if name not in self._held]
        self._to_wait += [spec.name for spec in starting]
        if starting:
            threading.Thread(target=self._start, args=(starting,), name="mcp-start", daemon=True).start()

    def _start(self, specs: list[ServerSpec]) -> None:
        now = time.monotonic()
        connections = [Connection(spec, now + spec.startup_timeout) for spec in specs]
        with self._lock:
            for conn in connections:
                self._connections[conn.spec.name] = conn
        for conn in connections:
            if conn.spec.problem:
                conn.fail(conn.spec.problem)
                continue
            try:
                self._loop.connect(conn, environ=self._environ, workspace=self.workspace,
                                   stderr=self.session_dir / f"mcp-{conn.spec.name}.stderr.log")
            except Exception as error:  # the SDK cannot be imported, the loop cannot start: said, not raised
                conn.fail(f"cannot start: {error}")

    def wait_for(self, names: Sequence[str], stop: Callable[[], bool] = lambda: False) -> None:
        """Wait until these servers are ready or failed, each at most until its startup deadline."""
        for name in names:
            while (conn := self._connection(name)) is None and name not in self._held:
                if stop():
                    return
                time.sleep(0.01)  # the start thread has not made it yet
            if conn is None:
                continue
            while not conn.settled.wait(0.05):
                if stop():
                    return
                if time.monotonic() > conn.deadline + SETTLE_SLACK:
                    conn.fail(f"did not start within {conn.spec.startup_timeout:g} s")
                    self._loop.stop(conn)

    def failed_required(self) -> str | None:
        """Why the start must stop: a required server that is not ready (None when all are)."""
        for name in self.required:
            conn = self._connection(name)
            if conn is None or conn.state != "ready":
                return f"MCP server {name!r} is required but {conn.error if conn else 'did not start'}"
        return None

    def tools_for_turn(self, stop: Callable[[], bool] = lambda: False) -> list[Tool]:
        """The tools of every ready server, for the next turn; the first turn waits for starting servers."""
        if self._to_wait:
            names, self._to_wait = self._to_wait, []
            self.wait_for(names, stop)
        tools: dict[str, Tool] = {}
        with self._lock:
            connections = sorted(self._connections.values(), key=lambda c: list(self._specs).index(c.spec.name))
        for conn in connections:
            if conn.state == "failed" and conn.spec.name not in self._told:
                self._told.add(conn.spec.name)
                self._say(f"MCP server {conn.spec.name!r} failed: {conn.error}")
            if conn.state == "ready":
                for tool in self._tools_of(conn):  # "a.b" and "a_b" name their tools alike: the first defined wins
                    tools.setdefault(tool.name, tool)
        if tools:  # where a too-big result can be read on: outside the workspace, so not by the file tools
            self._reader = self._reader or result_reader(self.session_dir)
            tools[self._reader.name] = self._reader
        return list(tools.values())

    def _tools_of(self, conn: Connection) -> list[Tool]:
        name = conn.spec.name
        if name not in self._tools:
            made, seen = [], set()
            for listed in conn.tools:
                if not conn.spec.offers(listed.name):
                    continue
                tool = as_tool(name, listed, trusted=conn.spec.trusted, run=self._runner(conn, listed.name))
                if tool.name not in seen:  # two names that differ only in characters we replace: first wins
                    seen.add(tool.name)
                    made.append(tool)
            self._tools[name] = made
        return self._tools[name]

    def _runner(self, conn: Connection, tool: str) -> Callable[[ToolContext, dict[str, Any]], Output]:
        return lambda ctx, args: self._run(conn, tool, ctx, args)

    def _run(self, conn: Connection, tool: str, ctx: ToolContext, args: dict[str, Any]) -> Output:
        """One call, from a tool thread: progress to the status line, Ctrl-C or Esc to the server."""
        spec = conn.spec

        def progress(done: float, total: float | None, message: str | None) -> None:
            ctx.report_progress(progress_line(done, total, message))

        outcome = self._loop.call(conn, tool, args, progress=progress, cancelled=ctx.cancelled)
        seconds = f"{outcome.seconds:.1f} s"
        match outcome.stopped:
            case "person":
                raise ToolError(f"cancelled on server {spec.name} after {seconds}: the person stopped this call "
                                "and the server was told to stop. Do not retry it unasked.",
                                Facts(ended="interrupted", detail=f"cancelled on server {spec.name} after {seconds}"))
            case "idle":
                raise ToolError(f"timed out on server {spec.name} after {seconds}: no result and no progress for "
                                f"{spec.tool_timeout:g} s, so it was cancelled (the server was told).",
                                Facts(ended="timed_out", detail=f"no progress for {spec.tool_timeout:g} s"))
            case "cap":
                raise ToolError(f"timed out on server {spec.name} after {seconds}: calls may take at most "
                                f"{spec.tool_timeout_max:g} s, so it was cancelled (the server was told).",
                                Facts(ended="timed_out", detail=f"over {spec.tool_timeout_max:g} s in all"))
        if outcome.error is not None:
            raise ToolError(f"MCP server {spec.name}: {outcome.error}", Facts(ended="failed", detail=outcome.error))
        text, detail = as_text(outcome.result, server=spec.name, tool=tool, spill=self.session_dir)
        if outcome.result.is_error:
            raise ToolError(text, Facts(ended="failed", detail=detail))
        return Output(text, Facts(detail=detail))

    def describe(self) -> list[str]:
        """One line per server for /mcp: name, where it is defined, what it runs, its state."""
        rows = []
        for name, spec in self._specs.items():
            conn = self._connection(name)
            if name in self._held:
                state = self._held[name]
            elif conn is None or conn.state == "starting":
                state = "starting"
            elif conn.state == "ready":
                count = len(self._tools_of(conn))
                state = f"ready, {count} tool{'s' * (count != 1)}"
            else:
                state = f"{conn.state}: {conn.error}" if conn.error else conn.state
            rows.append(printable(f"{name} · {state} · {spec.transport} {spec.shown()} · {spec.source}"))
        return rows

    def approve(self, name: str) -> str:
        """The person said yes to a project server: remember this exact definition and start it."""
        spec = self._specs.get(name)
        if spec is None:
            return f"no MCP server {name!r} (/mcp lists them)"
        if not self._held.get(name, "").startswith("not approved"):
            return f"MCP server {name!r} needs no approval ({self._held.get(name) or 'it is started'})"
        self._approvals.approve(spec.digest(self.workspace), name, self.workspace)
        del self._held[name]
        self._to_wait.append(name)
        threading.Thread(target=self._start, args=([spec],), name="mcp-start", daemon=True).start()
        return printable(f"approved {name} ({spec.shown()}); its tools join from the next message")

    def close(self) -> None:
        self._loop.close()

    def _connection(self, name: str) -> Connection | None:
        with self._lock:
            return self._connections.get(name)
