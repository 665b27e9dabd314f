"""``--output-format stream-json`` in Claude Code's line types, beside midstream's live events, for one -p run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from midstream.tools.conversation.transcript import Transcript
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env

pytestmark = pytest.mark.process


def test_stream_json_has_init_assistant_user_and_a_final_result(workspace):
    (workspace / "notes.txt").write_text("hello\n")
    broken = reply(Text("This reply breaks off half w", chunk=4)) | {"drop_after": 5}
    server = ScriptedServer([
        reply(Text("Reading.\n"), ToolUse("t1", "read_file", {"path": "notes.txt"}),
              ToolUse("t2", "read_file", {"path": "missing.txt"})),
        broken,
        reply(Text("The notes say hello.")),
    ])
    env = program_env()
    with server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "read", "--output-format", "stream-json",
                               "--isolation", "none"], cwd=workspace, env=env | {"ANTHROPIC_BASE_URL": server.url},
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    types = [line["type"] for line in lines]
    assert types[0] == "system" and lines[0]["subtype"] == "init" and types[-1] == "result"
    assert types.count("result") == 1 and set(types) == {"system", "event", "assistant", "user", "result"}
    session_id = Transcript.find(workspace).stem
    first, second = [line for line in lines if line["type"] == "assistant"]
    assert first["message"]["role"] == "assistant" and first["session_id"] == session_id
    assert [b["type"] for b in first["message"]["content"]] == ["text", "tool_use", "tool_use"]
    assert first["message"]["content"][1] == {"type": "tool_use", "id": "t1", "name": "read_file",
                                              "input": {"path": "notes.txt"}}
    assert first["message"]["stop_reason"] == "tool_use"
    assert second["message"]["content"] == [{"type": "text", "text": "The notes say hello."}]  # not the broken one
    (user,) = [line for line in lines if line["type"] == "user"]
    results = user["message"]["content"]
    assert [r["tool_use_id"] for r in results] == ["t1", "t2"] and user["message"]["role"] == "user"
    assert "hello" in results[0]["content"] and results[0]["is_error"] is False and results[1]["is_error"] is True
    result = lines[-1]
    assert result["subtype"] == "success" and result["is_error"] is False and result["session_id"] == session_id
    assert result["result"] == "The notes say hello." and result["num_turns"] == 2
    assert isinstance(result["duration_ms"], int) and result["usage"]["output_tokens"] > 0
    assert {"input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"} <= set(result["usage"])
    assert "total_cost_usd" in result
    events = [line["event"] for line in lines if line["type"] == "event"]
    assert "TurnRolledBack" in events and "ToolCallReady" in events  # the live events beside them
    ready = next(i for i, line in enumerate(lines) if line.get("event") == "ToolCallReady")
    assert ready < lines.index(first)  # dispatched before the reply was committed
    assert lines.index(first) < lines.index(user) < lines.index(second)
