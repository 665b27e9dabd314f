"""Headless runs (-p with each output format, exit codes, stdin), record and replay, and the demo."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.conversation.transcript import Transcript
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import midstream, program_env

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parent.parent


def _task_replies():
    return [reply(Text("Reading.\n"), ToolUse("t1", "read_file", {"path": "notes.txt"})),
            reply(Text("The notes say **hello**."))]


def test_json_output_is_one_object_with_result_usage_and_tool_calls(workspace):
    (workspace / "notes.txt").write_text("hello\n")
    server = ScriptedServer(_task_replies())
    with server:
        done = midstream(["-p", "read the notes", "--output-format", "json"], workspace,
                         {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    result = json.loads(line)
    assert result["ok"] is True and result["stop_reason"] == "end_turn" and result["error"] is None
    assert result["result"] == "The notes say **hello**."
    assert result["requests"] == 2
    (call,) = result["tool_calls"]
    assert call["name"] == "read_file" and call["input"] == {"path": "notes.txt"} and call["is_error"] is False
    assert result["usage"]["output"] == 10 and "hit_ratio" in result["usage"]
    # The fields scripts written for Claude Code's -p --output-format json read:
    assert result["type"] == "result" and result["subtype"] == "success" and result["is_error"] is False
    assert result["session_id"] == Transcript.find(workspace).stem
    assert result["num_turns"] == 2 and isinstance(result["duration_ms"], int) and result["duration_ms"] >= 0
    assert result["usage"]["output_tokens"] == 10 and "input_tokens" in result["usage"]
    assert "cache_read_input_tokens" in result["usage"] and "total_cost_usd" in result


def test_stream_json_is_one_object_per_event(workspace):
    (workspace / "notes.txt").write_text("hello\n")
    server = ScriptedServer(_task_replies())
    with server:
        done = midstream(["-p", "read", "--output-format", "stream-json"], workspace,
                         {"ANTHROPIC_BASE_URL": server.url})
    events = [json.loads(line) for line in done.stdout.splitlines()]
    init = events[0]  # first: what applies to this run, as Claude Code's system/init line
    assert init["type"] == "system" and init["subtype"] == "init" and init["event"] == "SessionStarted"
    assert init["session_id"] == Transcript.find(workspace).stem and init["model"]
    assert init["mode"] == "auto" and init["refuse_destructive"] is True  # -p without --mode
    assert init["sandbox"] in ("bwrap", "unavailable") and "read_file" in init["tools"]
    names = [e["event"] for e in events]
    assert names[1:4] == ["SandboxStatus", "MessageSent", "RequestStarted"] and names[-1] == "TurnEnded"  # told once
    for expected in ("TextDelta", "ToolCallStarted", "ToolCallReady", "ToolRunning", "ToolFinished", "TurnCommitted"):
        assert expected in names
    assert names.index("ToolCallReady") < names.index("TurnCommitted")  # dispatched before the reply ended


def test_the_task_can_come_from_stdin(workspace):
    server = ScriptedServer([reply(Text("got it"))])
    with server:
        done = midstream(["-p", "-"], workspace, {"ANTHROPIC_BASE_URL": server.url}, stdin="a task\nover two lines\n")
    assert done.stdout == "got it\n"
    assert server.requests[0]["body"]["messages"][0]["content"][-1]["text"] == "a task\nover two lines\n"


def test_exit_codes_say_how_it_ended(workspace):
    cases = [
        ([reply(Text("done"))], 0, ""),
        ([{"status": 529, "error": {"type": "overloaded_error", "message": "busy"}}] * 2, 1, "529"),
        ([reply(Text("I can't help with that."), stop_reason="refusal")], 3, "refused"),
        ([reply(ToolUse(f"t{i}", "read_file", {"path": "x"})) for i in range(3)], 1, "2 model requests"),
    ]
    for replies, code, reason in cases:
        server = ScriptedServer(replies)
        with server:
            done = midstream(["-p", "go", "--max-attempts", "2", "--max-requests", "2"], workspace,
                             {"ANTHROPIC_BASE_URL": server.url})
        assert done.returncode == code, (replies, done.stderr)
        if reason:
            last = done.stderr.strip().splitlines()[-1]
            assert last.startswith("midstream: ") and reason in last


def test_a_recording_replays_to_the_same_transcript(tmp_path):
    original = tmp_path / "original"
    original.mkdir()
    (original / "notes.txt").write_text("alpha\n")
    live, replayed = tmp_path / "live", tmp_path / "replayed"
    shutil.copytree(original, live)
    shutil.copytree(original, replayed)
    broken = reply(Text("This reply breaks off half w", chunk=4))
    broken["drop_after"] = 5
    server = ScriptedServer([
        reply(Text("Reading.\n"), ToolUse("t1", "read_file", {"path": "notes.txt"})),
        broken,
        reply(ToolUse("t2", "edit_file", {"path": "notes.txt", "old_string": "alpha", "new_string": "beta"})),
        reply(Text("Changed alpha to beta.")),
    ])
    recording = tmp_path / "recording"
    with server:
        first = midstream(["-p", "change it", "--record", str(recording)], live, {"ANTHROPIC_BASE_URL": server.url})
    assert first.returncode == 0, first.stderr
    assert "rolled back" in first.stderr
    assert sorted(p.name for p in recording.iterdir())[:3] == ["0001.request.json", "0001.response.json",
                                                               "0001.response.sse"]
    guarded = tmp_path / "guarded"
    shutil.copytree(original, guarded)
    safe = midstream(["-p", "change it", "--replay", str(recording)], guarded, {})
    assert "read-only" in safe.stderr and "replay" in safe.stderr  # it says so
    assert (guarded / "notes.txt").read_text() == "alpha\n"  # and the recorded edit was refused
    again = midstream(["-p", "change it", "--replay", str(recording), "--mode", "auto"], replayed, {})
    assert again.returncode == 0, again.stderr
    assert "rolled back" in again.stderr  # the drop happens again, at the same byte
    assert again.stdout == first.stdout == "Changed alpha to beta.\n"
    assert (replayed / "notes.txt").read_text() == (live / "notes.txt").read_text() == "beta\n"
    live_history = Transcript.load(Transcript.find(live))
    replayed_history = Transcript.load(Transcript.find(replayed))
    assert replayed_history == live_history and history_problems(live_history) == []


def test_the_demo_runs_to_the_end_and_leaves_a_repository_to_look_at(tmp_path):
    env = program_env(TERM="xterm")
    child = pexpect.spawn(sys.executable, ["-m", "midstream", "--demo"], cwd=str(tmp_path), env=env,
                          dimensions=(50, 140), encoding="utf-8", timeout=60)
    child.expect(r"drives the real agent in ([^\s\x1b]+)")
    workspace = Path(child.match.group(1).strip())
    for step in ("Read calc.py", "Edited calc.py", r"Ran `python3 -m unittest -v`", "partial reply discarded",
                 "runs in", "pressing Ctrl-C for you", "stopped by the person", "demo finished: calc.py fixed"):
        child.expect(step)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    try:
        assert "return a + b" in (workspace / "calc.py").read_text()
        assert len(list((workspace / "build").rglob("*.o"))) == 24  # the destructive call never ran
        tests = subprocess.run([sys.executable, "-m", "unittest", "-q"], cwd=workspace, capture_output=True, text=True)
        assert tests.returncode == 0 and re.search(r"Ran 5 tests", tests.stderr)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def test_headless_stderr_tells_things_in_the_order_they_happened(workspace):
    (workspace / "build").mkdir()
    (workspace / "build" / "out.o").write_text("x")
    server = ScriptedServer([
        reply(Text("Let me clean up first.\n"), ToolUse("t1", "bash", {"command": "rm -rf build/"})),
        reply(Text("Clean now.")),
    ])
    with server:
        done = midstream(["-p", "clean", "--isolation", "none", "--mode", "auto", "--grace", "0.2"], workspace,
                         {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    narration = lines.index("· Let me clean up first.")
    warning = next(i for i, line in enumerate(lines) if line.startswith("⚠ destructive: rm -rf build/"))
    running = lines.index("… Running `rm -rf build/`")
    outcome = next(i for i, line in enumerate(lines) if line.startswith("✓ Ran `rm -rf build/`"))
    assert narration < warning < running < outcome, lines
    assert done.stdout == "Clean now.\n"
    assert sum(" in · " in line for line in lines) == 1  # one usage line for the message, not per request


def test_a_refused_connection_names_the_url_and_is_not_called_a_rollback(workspace):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    done = midstream(["-p", "hi", "--max-attempts", "2"], workspace, {"ANTHROPIC_BASE_URL": url})
    assert done.returncode == 1
    assert f"cannot connect to the model service at {url}" in done.stderr
    assert "partial reply" not in done.stderr and "rolled back" not in done.stderr
    assert "/retry sends the same message" not in done.stderr  # no prompt to type it at in -p
    assert "`midstream --continue` then /retry" in done.stderr.splitlines()[-1]
