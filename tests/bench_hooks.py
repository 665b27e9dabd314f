"""What hooks and traces cost: one turn with one read_file call, through the real loop against the
scripted server, with no hook (the baseline), a `true` hook and a Python hook on PreToolUse, and with
traces off and on (the SDK with an in-memory exporter); then what importing the SDK adds to start-up.

Run: ``python -m tests.bench_hooks``. Prints tables; asserts nothing.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from midstream.agent import Agent, AgentConfig
from midstream.tools import default_registry
from midstream.tools.events import Quiet
from midstream.tools.hooks.config import HookCommand
from midstream.tools.hooks.policy import Hooks
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.bench_engine import table


class _Quiet(Quiet):
    def say(self, text: str, style: str = "") -> None:
        pass


def _turn_ms(workspace: Path, hooks: list[HookCommand], tracer: Any = None, turns: int = 25) -> float:
    replies = []
    for n in range(turns):
        replies += [reply(ToolUse(f"t{n}", "read_file", {"path": "a.txt"})), reply(Text("ok"))]
    times = []
    with ScriptedServer(replies) as server:
        config = AgentConfig(workspace=workspace, base_url=server.url, api_key="sk", model="claude-test",
                             system_prompt="bench", prompt_cache=False, tell_date=False, isolation="none")
        agent = Agent(config, tools=default_registry(), renderer=_Quiet(), hooks=Hooks(hooks, workspace),
                      tracer=tracer)
        try:
            for _ in range(turns):
                started = time.perf_counter()
                agent.send("read")
                times.append((time.perf_counter() - started) * 1000)
        finally:
            agent.close()
    return statistics.median(times)


def _import_ms(module: str, runs: int = 5) -> float:
    """What importing ``module`` adds once the program itself (midstream.agent) is loaded."""
    code = (f"import midstream.agent, time; t = time.perf_counter(); import {module}; "
            "print((time.perf_counter() - t) * 1000)")
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout) for _ in range(runs))


def main() -> None:
    from midstream.tools.tracing_otel import tracer_with
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder)
        (workspace / "a.txt").write_text("a\n")
        script = workspace / "hook.py"
        script.write_text(f"#!{sys.executable} -S\nimport json, sys\njson.load(sys.stdin)\n")
        script.chmod(0o755)
        baseline = _turn_ms(workspace, [])
        measured = [
            ("PreToolUse `true`", _turn_ms(workspace, [HookCommand("PreToolUse", "Read", "true")])),
            ("PreToolUse python -S reading stdin", _turn_ms(workspace, [HookCommand("PreToolUse", "", str(script))])),
            ("traces on (in-memory exporter)", _turn_ms(workspace, [], tracer_with(InMemorySpanExporter()))),
        ]
        rows = [["no hook (baseline)", baseline, 0.0], *[[label, ms, ms - baseline] for label, ms in measured]]
    table("One turn with one read_file call and a second request (median ms)", ["setup", "ms", "added ms"], rows)
    table("Start-up: what an import adds after midstream.agent (median ms, fresh interpreter)", ["module", "ms"],
          [["midstream.tools.tracing (always; already loaded by the agent)", _import_ms("midstream.tools.tracing")],
           ["midstream.tools.tracing_otel + SDK (only with OTEL_TRACES_EXPORTER=otlp)",
            _import_ms("midstream.tools.tracing_otel")],
           ["+ the OTLP/HTTP exporter (same)", _import_ms(
               "midstream.tools.tracing_otel, opentelemetry.exporter.otlp.proto.http.trace_exporter")]])


if __name__ == "__main__":
    main()
