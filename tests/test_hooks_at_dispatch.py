"""PreToolUse runs at dispatch, while the model still streams, side by side for independent calls; its
time is on the call's status line, and its span sits under the call's (the real loop, real hooks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from midstream.agent import Agent, AgentConfig
from midstream.tools import default_registry
from midstream.tools.events import ToolFinished, ToolRunning
from midstream.tools.hooks.config import HookCommand
from midstream.tools.hooks.policy import Hooks
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
from midstream.tools.tracing_otel import tracer_with
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import RecordingRenderer, wait_until

pytestmark = pytest.mark.process

# Marks its start, then waits (bounded) for the other call's hook: both finish only if they overlap.
HOOK = """#!/usr/bin/env python3
import json, pathlib, sys, time
call = json.load(sys.stdin)["tool_use_id"]
marks = pathlib.Path(sys.argv[1])
(marks / f"started-{call}").touch()
other = {"t1": "t2", "t2": "t1"}[call]
for _ in range(200):
    if (marks / f"started-{other}").exists():
        sys.exit(0)
    time.sleep(0.05)
print(f"{call}: the other call's hook never ran beside me", file=sys.stderr)
sys.exit(2)
"""


def test_pre_tool_use_hooks_run_while_the_reply_streams_and_side_by_side(workspace: Path, tmp_path: Path):
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    script.chmod(0o755)
    (workspace / "a.txt").write_text("a\n")
    (workspace / "b.txt").write_text("b\n")
    streaming = reply(ToolUse("t1", "read_file", {"path": "a.txt"}), ToolUse("t2", "read_file", {"path": "b.txt"}),
                      Text("still talking"))
    seen_mid_stream: list[bool] = []
    text_start = next(i for i, e in enumerate(streaming["events"])
                      if e["type"] == "content_block_start" and e["index"] == 2)
    # The reply holds its text back until both hooks have started: they run at dispatch, not at message_stop.
    streaming["events"][text_start]["_before"] = lambda: seen_mid_stream.append(
        wait_until(lambda: all((marks / f"started-{c}").exists() for c in ("t1", "t2")), 15))
    exported = InMemorySpanExporter()
    server = ScriptedServer([streaming, reply(Text("done"))])
    with server:
        renderer = RecordingRenderer()
        config = AgentConfig(workspace=workspace, base_url=server.url, api_key="sk-test", model="claude-test",
                             system_prompt="You are a test.", prompt_cache=False, tell_date=False)
        agent = Agent(config, tools=default_registry(), renderer=renderer, tracer=tracer_with(exported),
                      hooks=Hooks([HookCommand("PreToolUse", "Read", f"{script} {marks}")], workspace))
        try:
            ended = agent.send("read both")
        finally:
            agent.close()
    assert ended.ok and seen_mid_stream == [True]
    results = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert [r.get("is_error", False) for r in results] == [False, False], results
    # The hook is what the call does first: its status line says so, then the call's own.
    running = [e.status for e in renderer.of(ToolRunning) if e.id == "t1"]
    assert running[0].startswith("PreToolUse hook `") and running[-1].startswith("Reading a.txt")
    assert all(not f.result.is_error for f in renderer.of(ToolFinished))
    spans = {span.name: span for span in exported.get_finished_spans() if span.name != "hook PreToolUse"}
    hooks = [span for span in exported.get_finished_spans() if span.name == "hook PreToolUse"]
    tools = [span for span in exported.get_finished_spans() if span.name == "execute_tool read_file"]
    assert len(hooks) == 2 and {h.parent.span_id for h in hooks} == {t.context.span_id for t in tools}
    assert all(h.start_time < spans["chat claude-test"].end_time for h in hooks)


def _agent(server: ScriptedServer, workspace: Path, hooks: list[HookCommand], **config: object):
    renderer = RecordingRenderer()
    asked: list[str] = []

    def confirm(question: str, cancelled: object) -> str:
        asked.append(question)
        return "yes"

    settings = dict(workspace=workspace, base_url=server.url, api_key="sk-test", model="claude-test",
                    system_prompt="You are a test.", prompt_cache=False, tell_date=False, isolation="none", **config)
    agent = Agent(AgentConfig(**settings), tools=default_registry(), renderer=renderer,  # type: ignore[arg-type]
                  confirm=confirm, hooks=Hooks(hooks, workspace))
    return agent, renderer, asked


def _answer(tmp_path: Path, decision: str) -> str:
    path = tmp_path / f"{decision}.json"
    path.write_text(json.dumps({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": decision,
                                                       "permissionDecisionReason": "the hook wants a look"}}))
    return f"cat {path}"


@pytest.mark.parametrize(("mode", "decision", "questions", "written"), [
    ("ask", "allow", [], True),  # the hook approved: ask mode's question is spared
    ("ask", None, ["Writing new.txt?"], True),  # no hook answer: ask mode asks as always
    ("auto", "ask", ["Writing new.txt? (the hook wants a look)"], True),  # the hook asks, even in auto mode
    ("read-only", "allow", [], False),  # allow never loosens read-only mode
])
def test_a_hooks_permission_decision_reaches_the_gate(workspace: Path, tmp_path: Path, mode: str,
                                                      decision: str | None, questions: list[str], written: bool):
    hooks = [HookCommand("PreToolUse", "Write", _answer(tmp_path, decision))] if decision else []
    server = ScriptedServer([reply(ToolUse("t1", "write_file", {"path": "new.txt", "content": "x\n"})),
                             reply(Text("done"))])
    with server:
        agent, _, asked = _agent(server, workspace, hooks, mode=mode)
        try:
            assert agent.send("write it").ok
        finally:
            agent.close()
    assert asked == questions
    assert (workspace / "new.txt").exists() is written


def test_a_hook_that_asks_with_nobody_to_answer_refuses_the_call(workspace: Path, tmp_path: Path):
    server = ScriptedServer([reply(ToolUse("t1", "write_file", {"path": "new.txt", "content": "x\n"})),
                             reply(Text("done"))])
    with server:
        renderer = RecordingRenderer()
        config = AgentConfig(workspace=workspace, base_url=server.url, api_key="sk-test", model="claude-test",
                             system_prompt="You are a test.", prompt_cache=False, tell_date=False)
        agent = Agent(config, tools=default_registry(), renderer=renderer,
                      hooks=Hooks([HookCommand("PreToolUse", "", _answer(tmp_path, "ask"))], workspace))
        try:
            assert agent.send("write it").ok
        finally:
            agent.close()
    (result,) = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert result["is_error"] and "PreToolUse hook asks the person" in result["content"]
    assert "the hook wants a look" in result["content"] and not (workspace / "new.txt").exists()
