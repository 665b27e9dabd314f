"""Hooks around a turn in the real loop: Stop sends the model on, SessionStart and UserPromptSubmit add
context, a refused message leaves history untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from midstream.agent import Agent, AgentConfig
from midstream.tools import default_registry
from midstream.tools.events import HookNotice, TurnEnded
from midstream.tools.hooks.config import HookCommand
from midstream.tools.hooks.loop import MAX_STOP_BLOCKS
from midstream.tools.hooks.policy import Hooks
from midstream.tools.testing.scripted_server import ScriptedServer, Text, reply

from tests.helpers import RecordingRenderer

pytestmark = pytest.mark.process


def _agent(server: ScriptedServer, workspace: Path, *hooks: HookCommand) -> tuple[Agent, RecordingRenderer]:
    renderer = RecordingRenderer()
    config = AgentConfig(workspace=workspace, base_url=server.url, api_key="sk-test", model="claude-test",
                         system_prompt="You are a test.", prompt_cache=False, tell_date=False)
    return Agent(config, tools=default_registry(), renderer=renderer, hooks=Hooks(list(hooks), workspace)), renderer


def _texts(message: dict) -> list[str]:
    return [b["text"] for b in message["content"] if b["type"] == "text"]


def test_a_stop_hook_that_blocks_sends_the_model_on_with_its_reason(workspace: Path):
    # Blocks the first stop of a turn only: stop_hook_active is true the second time.
    hook = HookCommand("Stop", "", "grep -q '\"stop_hook_active\": true' || "
                       "{ echo 'run the tests first' >&2; exit 2; }")
    server = ScriptedServer([reply(Text("Done, I think.")), reply(Text("Tests pass."))])
    with server:
        agent, _ = _agent(server, workspace, hook)
        try:
            ended = agent.send("fix it")
        finally:
            agent.close()
    assert ended.ok and len(server.requests) == 2
    assert _texts(server.requests[1]["body"]["messages"][-1]) == ["[Stop hook] run the tests first"]


def test_a_stop_hook_cannot_keep_the_model_going_for_ever(workspace: Path):
    hook = HookCommand("Stop", "", "echo 'again' >&2; exit 2")
    server = ScriptedServer([reply(Text(f"try {n}")) for n in range(MAX_STOP_BLOCKS + 1)])
    with server:
        agent, renderer = _agent(server, workspace, hook)
        try:
            ended = agent.send("go")
        finally:
            agent.close()
    assert ended.ok and len(server.requests) == MAX_STOP_BLOCKS + 1
    assert any("times in a row" in n.message for n in renderer.of(HookNotice))


def test_session_start_and_prompt_hooks_add_context_to_the_message(workspace: Path):
    server = ScriptedServer([reply(Text("ok"))])
    with server:
        agent, _ = _agent(server, workspace, HookCommand("SessionStart", "", "echo 'branch: main'"),
                          HookCommand("UserPromptSubmit", "", "echo 'ticket: ABC-1'"))
        try:
            agent.hooks.session_start("startup")
            agent.send("hello")
        finally:
            agent.close()
    assert _texts(server.requests[0]["body"]["messages"][0]) == [
        "[SessionStart hook]\nbranch: main", "[UserPromptSubmit hook]\nticket: ABC-1", "hello"]


def test_a_refused_message_leaves_history_as_it_was_and_the_next_one_goes(workspace: Path):
    hook = HookCommand("UserPromptSubmit", "", "grep -q secret && { echo 'no secrets' >&2; exit 2; } || true")
    server = ScriptedServer([reply(Text("ok"))])
    with server:
        agent, renderer = _agent(server, workspace, hook)
        try:
            refused = agent.send("the secret is 42")
            history = list(agent.history)
            sent = agent.send("hello")
        finally:
            agent.close()
    assert not refused.ok and "no secrets" in refused.message and history == []
    assert sent.ok and len(server.requests) == 1
    assert _texts(server.requests[0]["body"]["messages"][0]) == ["hello"]
    assert [e.ok for e in renderer.of(TurnEnded)] == [False, True]


def test_continue_false_ends_the_turn_after_the_calls_with_its_reason(workspace: Path):
    from midstream.tools.testing.scripted_server import ToolUse

    answer = '{"continue": false, "stopReason": "the policy server says stop"}'
    hook = HookCommand("PreToolUse", "Bash", f"echo '{answer}'")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "touch ran"})), reply(Text("never"))])
    with server:
        agent, _ = _agent(server, workspace, hook)
        try:
            ended = agent.send("go")
            history = list(agent.history)
        finally:
            agent.close()
    assert not ended.ok and ended.message == "a hook ended the turn: the policy server says stop"
    assert len(server.requests) == 1 and not (workspace / "ran").exists()
    (result,) = [b for b in history[-1]["content"] if b["type"] == "tool_result"]  # every tool_use answered
    assert result["is_error"] and "the policy server says stop" in result["content"]
