"""Ctrl-C in a real pseudo-terminal against the scripted server: streams, tools, grace windows, leaving."""

from __future__ import annotations

import functools
import subprocess
import time
import uuid
from pathlib import Path

import pexpect
import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import processes_with, tool_results, wait_until
from tests.helpers import spawn as _spawn

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parent.parent


spawn = functools.partial(_spawn, mode="auto")


def sleeper(marker: str, seconds: int = 300) -> str:
    """A command that starts a child of its own; both carry ``marker`` in their command lines."""
    child = f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep({seconds})', '{marker}'])"
    return f"python3 -c \"import subprocess, sys, time; {child}; time.sleep({seconds})\" {marker}"


def say_then_leave(child: pexpect.spawn, text: str, expected_reply: str) -> None:
    """Back at the prompt after an interrupt: the conversation goes on, then Ctrl-D leaves."""
    child.sendline(text)
    child.expect(expected_reply)
    child.expect("› ")
    child.sendeof()
    child.expect(pexpect.EOF)


def test_ctrl_c_while_text_streams_closes_the_stream_and_keeps_the_partial_text(workspace):
    long_text = "".join(f"word{i} " for i in range(400))
    server = ScriptedServer([reply(Text(long_text, chunk=6, delay=0.05)), reply(Text("Understood."))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("tell me a long story")
        child.expect("word5 ")
        child.sendintr()
        child.expect("interrupted")
        child.expect("› ")
        assert wait_until(lambda: "client_closed" in server.log, 5)  # the response was closed at once
        say_then_leave(child, "stop there", "Understood")
    messages = server.requests[1]["body"]["messages"]
    assert history_problems(messages) == []
    partial = messages[1]["content"][0]["text"]  # the user's first message held the date note and the task
    assert messages[1]["role"] == "assistant" and long_text.startswith(partial) and "word5" in partial
    assert len(partial) < len(long_text)
    assert messages[2]["content"][0]["text"].startswith("[The person interrupted this turn.")
    assert messages[2]["content"][-1] == {"type": "text", "text": "stop there", "cache_control": {"type": "ephemeral"}}


def test_ctrl_c_while_a_command_runs_stops_it_and_its_children(workspace):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    server = ScriptedServer([
        reply(Text("Starting the server.\n"), ToolUse("t1", "bash", {"command": sleeper(marker)}),
              ToolUse("t2", "bash", {"command": "touch never-ran.txt"})),
        reply(Text("ok")),
    ])
    try:
        with server:
            child = spawn(server, workspace)
            child.expect("› ")
            child.sendline("start it")
            assert wait_until(lambda: len(processes_with(marker)) == 2, 10)
            child.sendintr()
            child.expect("interrupted")  # the turn is over: "› " alone may be the old prompt redrawn
            child.expect("› ")
            assert wait_until(lambda: not processes_with(marker), 5), processes_with(marker)
            say_then_leave(child, "what happened?", "ok")
    finally:
        subprocess.run(["pkill", "-f", marker])
    ran, waiting = tool_results(server.requests[1])
    assert ran["is_error"] and "Interrupted by the person after" in ran["content"]
    assert "Do not run it again" in ran["content"] and "[exit status" in ran["content"]
    assert waiting["is_error"] and waiting["content"].startswith("Not run")
    assert not (workspace / "never-ran.txt").exists()


def test_ctrl_c_in_a_destructive_grace_window_refuses_the_call(workspace):
    build = workspace / "build"
    build.mkdir()
    (build / "keep.o").write_text("precious")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -rf build/"})), reply(Text("ok"))])
    with server:
        child = spawn(server, workspace, "--grace", "30")
        child.expect("› ")
        child.sendline("clean up")
        child.expect("runs in")
        child.sendintr()
        child.expect("interrupted")  # the turn is over: "› " alone may be the old prompt redrawn
        child.expect("› ")
        say_then_leave(child, "never mind", "ok")
    assert (build / "keep.o").read_text() == "precious"
    (refused,) = tool_results(server.requests[1])
    # --isolation none: the fallback's countdown before the command runs
    assert refused["is_error"] and "stopped by the person (Esc or Ctrl-C)" in refused["content"]
    assert "during its 30 s grace window; nothing was run" in refused["content"]


def test_two_quick_ctrl_c_exit_restore_the_terminal_and_leave_no_process(workspace):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    trap = "trap '' INT TERM; "  # a command that ignores polite signals: only SIGKILL stops it
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": trap + sleeper(marker)}))])
    try:
        with server:
            child = spawn(server, workspace)
            child.expect("› ")
            child.sendline("run")
            assert wait_until(lambda: len(processes_with(marker)) == 2, 10)
            child.sendintr()
            # A person's second press: two ^C already queued together reach us as one, because the
            # terminal flushes pending input when it turns ^C into SIGINT.
            time.sleep(0.2)
            child.sendintr()
            child.expect(pexpect.EOF, timeout=10)
            output = child.before
            child.close()
            assert child.exitstatus == 130, output[-3000:]
            assert output.rstrip().endswith("\x1b[?25h") or "\x1b[?25h" in output[-200:]  # cursor shown again
            assert wait_until(lambda: not processes_with(marker), 5), processes_with(marker)
    finally:
        subprocess.run(["pkill", "-f", marker])


def test_one_ctrl_c_at_an_empty_prompt_warns_and_a_second_exits(workspace):
    server = ScriptedServer([])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendintr()
        child.expect("press Ctrl-C again to exit")
        child.expect("› ")
        assert child.isalive()
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0


def test_an_interrupted_git_commit_is_reported_as_having_changed_files(workspace):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    (workspace / "a.txt").write_text("a\n")
    subprocess.run(["git", "add", "a.txt"], cwd=workspace, check=True)
    hook = workspace / ".git" / "hooks" / "post-commit"
    hook.write_text("#!/bin/sh\ntouch hook-started.flag\nsleep 300\n")
    hook.chmod(0o755)
    command = " ".join(git) + " commit -q -m 'add a'"
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": command})), reply(Text("ok"))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("commit it")
        assert wait_until(lambda: (workspace / "hook-started.flag").exists(), 10)
        child.sendintr()
        child.expect("interrupted")  # the turn is over: "› " alone may be the old prompt redrawn
        child.expect("› ")
        say_then_leave(child, "did it commit?", "ok")
    (result,) = tool_results(server.requests[1])
    assert "Interrupted by the person" in result["content"]
    assert ".git/ (" in result["content"] and "refs/heads/" in result["content"]
    log = subprocess.run(["git", "log", "--oneline"], cwd=workspace, capture_output=True, text=True).stdout
    assert "add a" in log  # it really did commit, and the report says so


def test_ctrl_c_during_a_stalled_stream_returns_at_once(workspace):
    stalled = reply(Text("Thinking about it", chunk=4)) | {"stall_after": 5, "stall": 30.0}
    server = ScriptedServer([stalled, reply(Text("Fresh start."))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("go")
        child.expect(r"Thinking(?!…)")  # the reply's text on screen, not the "Thinking… 0.1 s" spinner
        assert wait_until(lambda: "stalled" in server.log, 10)  # blocked in recv(), nothing arriving
        started = time.monotonic()
        child.sendintr()
        child.expect("interrupted")
        child.expect("› ")
        assert time.monotonic() - started < 10  # not the 90 s idle timeout, not the 30 s stall
        say_then_leave(child, "again", "Fresh start")
    messages = server.requests[1]["body"]["messages"]
    assert history_problems(messages) == []
    assert messages[1]["content"] == [{"type": "text", "text": "Thinking"}]  # what had streamed


def test_ask_mode_asks_on_the_terminal_and_ctrl_c_abandons_the_question(workspace):
    server = ScriptedServer([
        reply(ToolUse("t1", "write_file", {"path": "yes.txt", "content": "approved\n"})),
        reply(Text("Wrote it.")),
        reply(ToolUse("t2", "write_file", {"path": "no.txt", "content": "never\n"})),
        reply(Text("ok")),
    ])
    with server:
        child = spawn(server, workspace, "--mode", "ask")
        child.expect("› ")
        child.sendline("write yes.txt")
        child.expect(r"Writing yes\.txt\? \[y\]es / \[n\]o / \[a\]lways this session: ")
        child.sendline("y")
        child.expect("Wrote it")
        child.expect("› ")
        child.sendline("write no.txt")
        child.expect(r"Writing no\.txt\?")
        time.sleep(0.3)
        child.sendintr()  # instead of answering
        child.expect("› ")
        say_then_leave(child, "fine, leave it", "ok")
    assert (workspace / "yes.txt").read_text() == "approved\n"
    assert not (workspace / "no.txt").exists()
    (refused,) = tool_results(server.requests[3])
    assert refused["is_error"] and "refused" in refused["content"]
