"""MCP dispatch: from a tool_use block's stop on the wire to ``tools/call`` arriving at the server, over stdio.

    python tests/bench_mcp.py [--turns 30]

Each turn's reply calls the test server's ``echo``; the scripted server notes the wall-clock time
just before it writes the block's ``content_block_stop``, the MCP server (its own process) notes
the time its handler starts (CLOCK_REALTIME is shared by processes). Baselines in the same run: a
built-in tool (block stop to the tool's ToolRunning event, no MCP at all) and the same echo
run by its Tool from a plain thread (no model stream, no scheduler, no gate). A writer (any tool of
an untrusted server) takes an /undo snapshot before it runs; a trusted read-only tool does not. Also: how long the
servers take to be ready after ``start()``, and what importing the SDK costs (kept off the start).
Never fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from midstream.agent import Agent, AgentConfig  # noqa: E402
from midstream.tools import builtin_tools  # noqa: E402
from midstream.tools.events import ToolRunning  # noqa: E402
from midstream.tools.registry import ToolContext, ToolRegistry  # noqa: E402
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply  # noqa: E402

from tests.bench_engine import table  # noqa: E402
from tests.mcp_helpers import started, stdio_spec  # noqa: E402


def _stop_stamped(call: ToolUse, stamps: dict[str, float]) -> dict:
    """A reply calling ``call`` whose block stop is stamped just before it is written."""
    scripted = reply(call, Text("and some text after it", chunk=4))
    stop = next(e for e in scripted["events"] if e["type"] == "content_block_stop" and e["index"] == 0)
    stop["_before"] = lambda: stamps.__setitem__(call.id, time.time())
    return scripted


class _Running:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def show(self, event: object) -> None:
        if isinstance(event, ToolRunning):
            self.at[event.id] = time.time()


def _arrivals(log: Path, tool: str = "echo") -> list[float]:
    return [float(line.split()[2]) for line in log.read_text().splitlines() if line.startswith(f"call {tool} ")]


def _row(name: str, samples: list[float]) -> list[object]:
    ms = sorted(s * 1000 for s in samples)
    return [name, len(ms), statistics.median(ms), ms[int(len(ms) * 0.9) - 1], ms[-1]]


def _import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=30)
    turns = parser.parse_args().turns
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        log = tmp / "server.log"
        said: list[str] = []
        begun = time.monotonic()
        servers = started([stdio_spec(log), stdio_spec(log, name="r", trusted=True)], tmp, said)
        servers.wait_for(["t", "r"])
        ready = time.monotonic() - begun
        stamps: dict[str, float] = {}
        replies = []
        for i in range(turns):
            replies += [_stop_stamped(ToolUse(f"m{i}", "mcp__t__echo", {"text": f"n{i}"}), stamps), reply(Text("ok"))]
            replies += [_stop_stamped(ToolUse(f"b{i}", "list_dir", {"path": "."}), stamps), reply(Text("ok"))]
            replies += [_stop_stamped(ToolUse(f"r{i}", "mcp__r__peek", {"text": f"n{i}"}), stamps), reply(Text("ok"))]
        server = ScriptedServer(replies)
        running = _Running()
        workspace = tmp / "ws"
        workspace.mkdir()
        with server:
            config = AgentConfig(workspace=workspace, base_url=server.url, api_key="sk-bench", system_prompt="bench",
                                 prompt_cache=False, tell_date=False, isolation="none")
            tools = ToolRegistry(builtin_tools(), [servers])
            agent = Agent(config, tools=tools, renderer=running)
            try:
                for i in range(turns):
                    agent.send(f"mcp {i}")
                    agent.send(f"builtin {i}")
                    agent.send(f"read-only {i}")
            finally:
                agent.close()
        arrivals = _arrivals(log)
        mcp = [arrivals[i] - stamps[f"m{i}"] for i in range(turns)]
        builtin = [running.at[f"b{i}"] - stamps[f"b{i}"] for i in range(turns)]
        peeks = _arrivals(log, "peek")
        read_only = [peeks[i] - stamps[f"r{i}"] for i in range(turns)]
        echo = tools.get("mcp__t__echo")
        assert echo is not None
        direct = []
        for i in range(turns):
            before = time.time()
            echo.run(ToolContext(workspace), {"text": f"d{i}"})
            direct.append(_arrivals(log)[-1] - before)
        servers.close()
    table(f"Block stop on the wire to the call starting ({turns} turns each, ms; {os.cpu_count()} cores)",
          ["path", "calls", "median", "p90", "max"],
          [_row("built-in list_dir: block stop -> ToolRunning (baseline)", builtin),
           _row("echo's Tool.run from this thread -> server (baseline: no stream, no scheduler)", direct),
           _row("MCP echo: block stop -> tools/call at the stdio server", mcp),
           _row("MCP peek, trusted read-only (no /undo snapshot first): same", read_only)])
    table("Start-up", ["what", "seconds"],
          [["stdio server ready after start() (SDK import, spawn, initialize, tools/list)", ready],
           ["import midstream.agent (the start-up path)", _import_seconds("midstream.agent")],
           ["import mcp.client.session (never on that path)", _import_seconds("mcp.client.session")]])


if __name__ == "__main__":
    main()
