"""The interactive session as a Claude Code user drives it, in a real pseudo-terminal: keys, the first
message on the command line, resuming, slash commands and ``!command``."""

from __future__ import annotations

import functools
import subprocess
import sys

import pexpect
import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.conversation.transcript import Transcript
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env, wait_until
from tests.helpers import spawn as _spawn

pytestmark = pytest.mark.process

spawn = functools.partial(_spawn, dimensions=(40, 140))


def leave(child: pexpect.spawn) -> None:
    child.expect("› ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def texts(request: dict, index: int = -1) -> list[str]:
    return [b["text"] for b in request["body"]["messages"][index]["content"] if b["type"] == "text"]


def test_esc_while_text_streams_closes_the_stream_and_the_next_message_is_answered(workspace):
    long_text = "".join(f"word{i} " for i in range(400))
    server = ScriptedServer([reply(Text(long_text, chunk=6, delay=0.05)), reply(Text("Understood."))])
    with server:
        child = spawn(server, workspace)
        child.expect("Esc or Ctrl-C stops a reply")  # the keys that apply are said at the start
        child.expect("› ")
        child.sendline("tell me a long story")
        child.expect("word5 ")
        child.send("\x1b[A")  # an arrow key is an escape sequence, not Esc: the reply goes on
        child.expect("word12 ")
        assert "client_closed" not in server.log
        child.send("\x1b")
        child.expect("interrupted")
        child.expect("› ")
        assert wait_until(lambda: "client_closed" in server.log, 5)
        child.sendline("stop there")
        child.expect("Understood")
        leave(child)
    messages = server.requests[1]["body"]["messages"]
    assert history_problems(messages) == []
    partial = messages[1]["content"][0]["text"]
    assert long_text.startswith(partial) and "word12" in partial and len(partial) < len(long_text)
    assert messages[2]["content"][-1]["text"] == "stop there"


def test_empty_enter_sends_nothing_and_ctrl_d_leaves(workspace):
    server = ScriptedServer([reply(Text("the only answer"))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("")
        child.expect("› ")
        child.sendline("   ")
        child.expect("› ")
        assert child.isalive() and server.requests == []
        child.sendline("hello")
        child.expect("the only answer")
        leave(child)
    assert len(server.requests) == 1


def test_a_first_message_on_the_command_line_is_sent_and_the_session_stays_open(workspace):
    server = ScriptedServer([reply(Text("fixed it")), reply(Text("you are welcome"))])
    with server:
        child = spawn(server, workspace, "fix the failing test")
        child.expect(r"session (\d{8}-\d{6}-[0-9a-f]{6})")  # the session id is shown at the start
        session_id = child.match.group(1)
        child.expect("fixed it")
        child.expect("› ")
        child.sendline("thanks")
        child.expect("you are welcome")
        leave(child)
    assert texts(server.requests[0])[-1] == "fix the failing test"
    assert Transcript.find(workspace).stem == session_id


def test_continue_shows_the_resume_notice_and_the_last_exchange(workspace):
    server = ScriptedServer([reply(Text("The capital of France is Paris.")), reply(Text("Still Paris."))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("what is the capital of France?")
        child.expect("Paris")
        leave(child)
        child = spawn(server, workspace, "-c")
        child.expect("resumed session ")
        child.expect(r"› what is the capital of France\?")
        child.expect("The capital of France is Paris.")
        child.expect("› ")
        child.sendline("and now?")
        child.expect("Still Paris")
        leave(child)
    second = server.requests[1]["body"]["messages"]
    assert len(second) == 3 and texts(server.requests[1])[-1] == "and now?"


def test_resume_without_an_id_lists_the_sessions_to_choose_from(workspace):
    server = ScriptedServer([reply(Text("answer one")), reply(Text("answer two")), reply(Text("back in one"))])
    with server:
        for message in ("first topic", "second topic"):
            child = spawn(server, workspace, message)
            child.expect("answer")
            leave(child)
        listed = subprocess.run([sys.executable, "-m", "midstream", "--resume"], cwd=workspace, capture_output=True,
                                text=True, env=program_env(ANTHROPIC_BASE_URL=server.url), timeout=30)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert "second topic" in lines[0] and "first topic" in lines[1]  # newest first
        assert "just now" in lines[0] or "min ago" in lines[0]
        child = spawn(server, workspace, "--resume")
        child.expect("first topic")  # the picker (tests/test_resume_picker.py), newest highlighted
        child.send("\x1b[B\r")  # Down, Enter: the one before it
        child.expect("resumed session")
        child.expect("› ")
        child.sendline("go on")
        child.expect("back in one")
        leave(child)
    assert texts(server.requests[2], 0)[-1] == "first topic"


def test_slash_commands_do_what_they_say_and_bang_runs_a_command(workspace):
    usage = {"input_tokens": 1000, "output_tokens": 50}
    server = ScriptedServer([reply(Text("one"), usage=usage, model="claude-sonnet-4-5"), reply(Text("two")),
                             reply(Text("three"))])
    with server:
        child = spawn(server, workspace, "--mode", "auto")
        child.expect("› ")
        child.sendline("/cost")
        child.expect("no tokens used yet")
        child.sendline("first")
        child.expect("one")
        child.expect("› ")
        child.sendline("/cost")
        child.expect(r"so far: 1,000 in · 50 out · (cache [\d,]+ read / [\d,]+ written \(hit [\d.]+\)|no cache "
                     r"reads yet) · \$0\.00\d\d · context [\d,]+ / 200,000 tokens")
        child.sendline("/model claude-other-1")
        child.expect("model: claude-other-1")
        child.sendline("/mode read-only")
        child.expect("mode: read-only")
        child.sendline("/mode sideways")
        child.expect(r"mode: read-only \(use /mode read-only\|ask\|auto\)")
        child.sendline("!echo hi from the shell")
        child.expect("hi from the shell")
        child.expect(r"\[exit status 0\]")
        child.expect("› ")
        child.sendline("what did it say?")
        child.expect("two")
        child.expect("› ")
        child.sendline("/undo")
        child.expect("not available in this build|undo")
        child.sendline("/clear")
        child.expect("new conversation")
        child.expect("› ")
        child.sendline("fresh start")
        child.expect("three")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    assert len(server.requests) == 3  # no command reached the model as a message of its own
    second = server.requests[1]["body"]
    assert second["model"] == "claude-other-1"
    said = texts(server.requests[1])[-1]
    assert "$ echo hi from the shell" in said and "hi from the shell\n[exit status 0]" in said
    assert said.endswith("what did it say?")
    third = server.requests[2]["body"]["messages"]
    assert len(third) == 1 and texts(server.requests[2])[-1] == "fresh start"  # /clear: a new conversation
    assert "echo" not in str(third)
    assert len(Transcript.sessions(workspace)) == 2  # the old conversation is kept on disk


def test_keys_typed_while_the_model_works_are_kept_for_the_prompt(workspace):
    server = ScriptedServer([reply(Text("slow " * 40, chunk=5, delay=0.03)), reply(Text("got the second"))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("first")
        child.expect("slow")
        child.send("second\r")  # typed during the turn: becomes the next message
        child.expect("got the second")
        leave(child)
    assert texts(server.requests[1])[-1] == "second"


def test_esc_while_a_command_runs_stops_it_as_ctrl_c_does(workspace):
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "echo started; sleep 60"})), reply(Text("ok"))])
    with server:
        child = spawn(server, workspace, "--mode", "auto")
        child.expect("› ")
        child.sendline("wait a minute")
        child.expect("started")
        child.send("\x1b")
        child.expect("› ")
        child.sendline("what happened?")
        child.expect("ok")
        leave(child)
    (result,) = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert result["is_error"] and "Interrupted by the person" in result["content"]


def test_the_default_mode_is_auto_only_in_a_git_repository_with_a_working_sandbox(workspace):
    from midstream.sandbox.isolation import bwrap_works

    server = ScriptedServer([])

    def greeting(*args: str) -> str:
        env = program_env() | {"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"}
        child = pexpect.spawn(sys.executable, ["-m", "midstream", *args], cwd=str(workspace), env=env,
                              dimensions=(40, 200), encoding="utf-8", timeout=20)
        child.expect(r"(mode [^\r\n]*)")
        line = child.match.group(1)
        leave(child)
        return line

    with server:
        assert greeting().startswith("mode ask: this workspace is not a git repository" if bwrap_works()
                                     else "mode ask: the sandbox does not work here")
        subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
        assert greeting("--isolation", "none").startswith("mode ask: the sandbox does not work here")
        assert greeting().startswith("mode auto" if bwrap_works() else "mode ask")
        assert greeting("--mode", "read-only").startswith("mode read-only (from --mode)")


def test_resume_inside_a_session_switches_to_the_chosen_one(workspace):
    server = ScriptedServer([reply(Text("about cats")), reply(Text("about dogs")), reply(Text("cats again"))])
    with server:
        child = spawn(server, workspace, "tell me about cats")
        child.expect("about cats")
        leave(child)
        child = spawn(server, workspace, "tell me about dogs")
        child.expect("about dogs")
        child.expect("› ")
        child.sendline("/resume")
        child.expect("about cats")  # the only other session: the one we are in is not listed
        child.send("\r")
        child.expect("resumed session")
        child.expect("› tell me about cats")
        child.expect("› ")
        child.sendline("more")
        child.expect("cats again")
        leave(child)
    messages = server.requests[2]["body"]["messages"]
    assert texts(server.requests[2], 0)[-1] == "tell me about cats" and len(messages) == 3


def test_continue_skips_sessions_left_before_their_first_message(workspace):
    server = ScriptedServer([reply(Text("noted")), reply(Text("yes, the blue one"))])
    with server:
        child = spawn(server, workspace, "remember the blue one")
        child.expect("noted")
        leave(child)
        child = spawn(server, workspace)  # opened and left without a word
        leave(child)
        child = spawn(server, workspace, "-c")
        child.expect("resumed session")
        child.expect("› remember the blue one")
        child.expect("› ")
        child.sendline("which one?")
        child.expect("blue one")
        leave(child)
    assert texts(server.requests[1], 0)[-1] == "remember the blue one"


def test_ctrl_c_stops_a_bang_command_and_ctrl_d_typed_during_a_turn_still_leaves(workspace):
    server = ScriptedServer([reply(Text("slow " * 30, chunk=5, delay=0.03))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("!echo begun; sleep 60")
        child.expect("Ctrl-C stops it")
        child.sendintr()
        child.expect(r"Interrupted by the person after [\d.]+ s")
        child.expect("› ")
        child.sendline("go")
        child.expect("slow")
        child.sendeof()  # during the turn: the session ends once the reply is done
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    said = texts(server.requests[0])[-1]
    assert "$ echo begun; sleep 60" in said and "Interrupted by the person" in said and said.endswith("go")


def test_esc_in_a_destructive_countdown_refuses_the_call(workspace):
    (workspace / "build").mkdir()
    (workspace / "build" / "keep.o").write_text("precious")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -rf build/"})), reply(Text("ok"))])
    with server:
        child = spawn(server, workspace, "--mode", "auto", "--grace", "30")
        child.expect("› ")
        child.sendline("clean up")
        child.expect("runs in")
        child.send("\x1b")
        child.expect("› ")
        child.sendline("never mind")
        child.expect("ok")
        leave(child)
    assert (workspace / "build" / "keep.o").read_text() == "precious"
    (refused,) = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert refused["is_error"] and "grace window" in refused["content"]


def test_bang_commands_in_read_only_mode_cannot_write_the_workspace(workspace):
    """Read-only mode binds the workspace read-only for every command: the person's `!command` too."""
    (workspace / "keep.txt").write_text("keep\n")
    server = ScriptedServer([])
    with server:
        env = program_env() | {"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"}
        for isolation in ("auto", "none"):  # bound read-only by bubblewrap; without it, the strict allowlist
            child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", isolation, "--mode", "read-only"],
                                  cwd=str(workspace), env=env, dimensions=(40, 140), encoding="utf-8", timeout=20)
            child.expect("› ")
            child.sendline("!rm -f keep.txt; echo made > made.txt")
            child.expect(r"\[exit status|Refused")
            leave(child)
            assert (workspace / "keep.txt").read_text() == "keep\n" and not (workspace / "made.txt").exists()


def test_cost_after_switching_model_prices_each_request_by_the_model_that_ran_it(workspace):
    """Tokens a free local model used are not re-priced at Opus rates after `/model claude-opus-4`."""
    usage = {"input_tokens": 1000, "output_tokens": 50}
    server = ScriptedServer([reply(Text("one"), usage=usage, model="qwen-local")])
    with server:
        child = spawn(server, workspace, "--model", "qwen-local")
        child.expect("› ")
        child.sendline("hi")
        child.expect("one")
        child.expect("› ")
        child.sendline("/model claude-opus-4")
        child.expect("model: claude-opus-4")
        child.expect("› ")
        child.sendline("/cost")
        child.expect(r"so far: 1,000 in · 50 out · no cache reads yet · ([^\r\n]*)\r")
        said = child.match.group(1)
        leave(child)
    assert "$" not in said and "cost unknown" in said



def test_model_switch_brings_the_new_model_s_context_window(workspace):
    """/model from an unknown local model to a Claude model: /cost and compaction know its window."""
    server = ScriptedServer([reply(Text("one"), usage={"input_tokens": 1000, "output_tokens": 50})])
    with server:
        child = spawn(server, workspace, "--model", "qwen-local")
        child.expect("› ")
        child.sendline("hi")
        child.expect("one")
        child.expect("› ")
        child.sendline("/model claude-opus-4")
        child.expect("model: claude-opus-4")
        child.expect("› ")
        child.sendline("/cost")
        child.expect(r"context ([^\r\n]*)\r")
        said = child.match.group(1)
        leave(child)
    assert "1,000 / 200,000 tokens" in said



def test_esc_stops_a_bang_command_as_ctrl_c_does(workspace):
    server = ScriptedServer([reply(Text("ok"))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("!echo begun; sleep 60")
        child.expect("stops it")
        child.expect(pexpect.TIMEOUT, timeout=0.5)  # the command is running
        child.send("\x1b")
        child.expect(r"Interrupted by the person after [\d.]+ s", timeout=10)
        child.expect("› ")
        child.sendline("go")
        child.expect("ok")
        leave(child)
    said = texts(server.requests[0])[-1]
    assert "$ echo begun; sleep 60" in said and "Interrupted by the person" in said
