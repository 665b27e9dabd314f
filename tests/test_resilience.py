"""Rollback, the undo journal, reuse of what already ran, history checks, transcripts, logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.conversation.transcript import AGENT_EXITED, Transcript, state_dir
from midstream.tools.events import ToolFinished, TurnRolledBack
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import drop_after_block, program_env, reply_committed, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def test_drop_mid_tool_json_rolls_back_without_running_the_call(make_agent):
    broken = reply(ToolUse("t1", "record", {"label": "never"}, chunk=3))
    broken["drop_after"] = 5  # message_start, ping, block start, two input deltas
    server = ScriptedServer([broken, reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server)
        assert agent.send("go").ok
    assert "start:never" not in server.log
    assert server.requests[0]["body"]["messages"] == server.requests[1]["body"]["messages"]


def test_a_write_is_undone_on_rollback_then_written_again_by_the_retry(make_agent, workspace):
    target = workspace / "notes.txt"
    target.write_text("original\n")
    target.chmod(0o640)
    seen_at_retry = {}
    write = ToolUse("t1", "write_file", {"path": "notes.txt", "content": "changed\n"})
    created = ToolUse("t2", "write_file", {"path": "new/fresh.txt", "content": "fresh\n"})
    retry = reply(write, created)
    retry["events"][0]["_before"] = lambda: seen_at_retry.update(
        notes=target.read_text(), fresh=(workspace / "new/fresh.txt").exists())
    server = ScriptedServer([drop_after_block(reply(write, created, Text("more")), 1), retry, reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server)
        assert agent.send("write").ok
    assert seen_at_retry == {"notes": "original\n", "fresh": False}  # restored before the retry
    assert target.read_text() == "changed\n" and (target.stat().st_mode & 0o777) == 0o640
    assert (workspace / "new/fresh.txt").read_text() == "fresh\n"
    (rolled,) = renderer.of(TurnRolledBack)
    assert sorted(rolled.undone) == ["new/fresh.txt", "notes.txt"] and rolled.commands == ()


def test_a_command_that_ran_is_not_run_twice_by_the_retry(make_agent, workspace):
    command = ToolUse("t1", "bash", {"command": "echo ran >> count.txt"})
    read = ToolUse("t2", "read_file", {"path": "count.txt"})
    server = ScriptedServer([
        # the text after the read streams slowly: both calls have run when the reply breaks off after it
        drop_after_block(reply(command, Text("waiting"), read, Text("more", chunk=1, delay=0.15)), 3),
        reply(ToolUse("t9", "bash", {"command": "echo ran >> count.txt"}), ToolUse("t8", "read_file",
                                                                                     {"path": "count.txt"})),
        reply(Text("ok")),
    ])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        assert agent.send("count").ok
    assert (workspace / "count.txt").read_text() == "ran\n"
    (rolled,) = renderer.of(TurnRolledBack)
    assert rolled.commands == ("echo ran >> count.txt",) and rolled.discarded == 1
    reused = [e for e in renderer.of(ToolFinished) if e.reused]
    assert [e.id for e in reused] == ["t9", "t8"]
    results = server.requests[2]["body"]["messages"][-1]["content"]
    assert [r["tool_use_id"] for r in results] == ["t9", "t8"] and "ran" in results[1]["content"]


def test_a_different_call_in_the_retry_runs_normally(make_agent, workspace):
    server = ScriptedServer([
        drop_after_block(reply(ToolUse("t1", "bash", {"command": "echo a >> log.txt"}), Text("x")), 0),
        reply(ToolUse("t2", "bash", {"command": "echo b >> log.txt"})),
        reply(ToolUse("t3", "bash", {"command": "echo a >> log.txt"})),  # after a commit: no reuse
        reply(Text("ok")),
    ])
    with server:
        agent, _ = make_agent(server, isolation="none")
        assert agent.send("go").ok
    assert (workspace / "log.txt").read_text() == "a\nb\na\n"


def test_retry_after_attempts_run_out(make_agent):
    server = ScriptedServer([{"status": 529, "error": {"type": "overloaded_error", "message": "busy"}}] * 2
                            + [reply(Text("finally"))])
    with server:
        agent, renderer = make_agent(server, max_attempts=2)
        ended = agent.send("hello")
        assert not ended.ok and "/retry" in ended.message
        assert agent.history == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
        assert agent.retry().ok
    assert [m["role"] for m in agent.history] == ["user", "assistant"]
    assert server.requests[2]["body"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


def test_an_invalid_history_is_never_sent(make_agent):
    server = ScriptedServer([reply(Text("unused"))])
    with server:
        agent, _ = make_agent(server)
        agent.history[:] = [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "record", "input": {}}]},
        ]
        ended = agent.send("next")
    assert not ended.ok and "tool_use t1 not answered" in ended.message
    assert server.requests == []


def test_history_problems_name_what_the_api_would_refuse():
    use = {"role": "assistant", "content": [{"type": "text", "text": "x"},
                                            {"type": "tool_use", "id": "a", "name": "n", "input": {}}]}
    result = {"type": "tool_result", "tool_use_id": "a", "content": "ok"}
    text = {"type": "text", "text": "hi"}
    good = [{"role": "user", "content": [text]}, use, {"role": "user", "content": [result, text]}]
    assert history_problems(good) == []
    assert history_problems([{"role": "user", "content": [text]}, use,
                             {"role": "user", "content": [text, result]}]) == [
        "user message 2 has content before its tool_result blocks"]
    assert history_problems([{"role": "user", "content": [result]}]) == [
        "tool_result a in message 0 answers no tool_use"]
    assert history_problems([use]) == ["the conversation does not start with a user message",
                                       "assistant message 0 ends the conversation with unanswered tool_use"]
    assert "are both user messages" in history_problems([{"role": "user", "content": "a"}] * 2)[0]


def test_the_transcript_holds_every_commit_and_loads_back(make_agent, workspace):
    server = ScriptedServer([reply(ToolUse("t1", "record", {"label": "A"})), reply(Text("done")),
                             reply(Text("second"))])
    transcript = Transcript.create(workspace, "claude-test")
    with server:
        agent, _ = make_agent(server)
        agent.transcript = transcript
        agent.send("first")
        agent.send("again")
    transcript.close()
    assert Transcript.load(transcript.path) == agent.history
    assert Transcript.find(workspace) == transcript.path
    with transcript.path.open("a") as f:
        f.write('{"type": "message", "message": {"role": "user", "con')  # torn by a crash
    assert Transcript.load(transcript.path) == agent.history


def _cli(args, cwd, env_extra):
    env = program_env(**env_extra)
    return subprocess.Popen([sys.executable, "-m", "midstream", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.process
def test_killed_during_a_tool_then_continue_sends_a_valid_history(workspace):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    command = f"touch started.flag; python3 -c 'import time; time.sleep(60)' {marker}"
    first = ScriptedServer([reply(Text("Running it."), ToolUse("t1", "bash", {"command": command}))])
    with first:
        agent = _cli(["-p", "run the slow thing", "--isolation", "none"], workspace,
                     {"ANTHROPIC_BASE_URL": first.url})
        try:
            assert wait_until(lambda: (workspace / "started.flag").exists() and reply_committed(), 20)
        finally:
            agent.kill()  # SIGKILL: no cleanup of any kind runs
            agent.communicate()
            subprocess.run(["pkill", "-f", marker])
    second = ScriptedServer([reply(Text("Resumed."))])
    with second:
        done = _cli(["--continue", "-p", "what happened?"], workspace, {"ANTHROPIC_BASE_URL": second.url})
        out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    messages = second.requests[0]["body"]["messages"]
    assert history_problems(messages) == []
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": AGENT_EXITED, "is_error": True},
        {"type": "text", "text": "what happened?", "cache_control": {"type": "ephemeral"}},
    ]


@pytest.mark.process
def test_the_log_file_has_requests_but_no_secrets(workspace):
    secret = "sk-ant-api03-" + uuid.uuid4().hex
    other = "ghp_" + uuid.uuid4().hex
    server = ScriptedServer([{"status": 401, "error": {"type": "authentication_error",
                                                       "message": f"invalid x-api-key: {secret}"}}])
    with server:
        done = _cli(["-p", "hi"], workspace, {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": secret,
                                             "GITHUB_TOKEN": other, "MIDSTREAM_LOG_LEVEL": "DEBUG"})
        done.communicate(timeout=60)
    assert server.requests[0]["headers"]["x-api-key"] == secret  # it was really sent
    log_text = (state_dir() / "logs" / "midstream.log").read_text()
    assert "request-id=req_scripted_1" in log_text and "HTTP 401" in log_text
    assert "request headers" in log_text and "[redacted]" in log_text
    assert secret not in log_text and other not in log_text
    assert json.dumps(secret)[1:-1] not in log_text
