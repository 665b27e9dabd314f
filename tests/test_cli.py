"""The command line, run as a real process against the scripted server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import midstream as run

ROOT = Path(__file__).resolve().parent.parent
MIDSTREAM = Path(sys.executable).parent / "midstream"


@pytest.mark.process
def test_print_mode_prints_the_reply_and_exits_0(workspace):
    (workspace / "notes.txt").write_text("the answer is 42\n")
    server = ScriptedServer([
        reply(Text("Let me look.\n"), ToolUse("t1", "read_file", {"path": "notes.txt"})),
        reply(Text("The answer is 42.")),
    ])
    with server:
        done = run(["-p", "what is the answer?"], workspace, {"ANTHROPIC_BASE_URL": server.url,
                                                              "ANTHROPIC_API_KEY": "sk-secret"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The answer is 42.\n"  # only the final answer: what a script wants
    assert "· Let me look." in done.stderr and "✓ Read notes.txt (1 line)" in done.stderr  # narration, tools: stderr
    first = server.requests[0]
    assert first["headers"]["x-api-key"] == "sk-secret"
    assert first["headers"]["anthropic-version"] == "2023-06-01"
    (message,) = first["body"]["messages"]
    date_block, task_block = message["content"]
    assert date_block["text"].startswith("<context>Today's date is ")
    assert task_block == {"type": "text", "text": "what is the answer?", "cache_control": {"type": "ephemeral"}}
    assert str(workspace) in json.dumps(first["body"]["system"])


@pytest.mark.process
def test_print_mode_exits_non_zero_when_the_model_fails(workspace):
    server = ScriptedServer([{"status": 400, "error": {"type": "invalid_request_error", "message": "bad thing"}}])
    with server:
        done = run(["-p", "x", "--model", "claude-x"], workspace, {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 1
    assert "bad thing" in done.stderr and "Traceback" not in done.stderr
    assert server.requests[0]["body"]["model"] == "claude-x"
    assert "x-api-key" not in server.requests[0]["headers"]  # a local server needs no key


@pytest.mark.process
def test_model_comes_from_the_environment(workspace):
    server = ScriptedServer([reply(Text("ok"))])
    with server:
        done = run(["-p", "x"], workspace, {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_MODEL": "claude-env"})
    assert done.returncode == 0
    assert server.requests[0]["body"]["model"] == "claude-env"


@pytest.mark.process
def test_missing_key_is_one_clear_line(workspace):
    done = run(["-p", "x"], workspace, {})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "ANTHROPIC_API_KEY" in done.stderr


@pytest.mark.process
def test_installed_console_script_works(workspace):
    server = ScriptedServer([reply(Text("from the script"))])
    with server:
        done = run(["-p", "x"], workspace, {"ANTHROPIC_BASE_URL": server.url}, script=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from the script"


def test_default_model_is_current():
    import warnings

    from anthropic.resources.messages.messages import DEPRECATED_MODELS
    from midstream.agent import DEFAULT_MODEL

    assert DEFAULT_MODEL not in DEPRECATED_MODELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from anthropic.types.model_param import ModelParam
    assert DEFAULT_MODEL in str(ModelParam)
