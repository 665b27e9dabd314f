"""The fault matrix, through the real program: ``python -m midstream`` against the scripted server.

Every case ends with the same two checks: the program did not crash (no traceback on stderr) and
every request it sent held a history the API accepts.
"""

from __future__ import annotations

import email.utils
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import drop_after_block, program_env, reply_committed, wait_until

pytestmark = pytest.mark.process

FAST = ["--isolation", "none", "--grace", "0"]



def _start(workspace: Path, server: ScriptedServer, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "midstream", *FAST, *args], cwd=workspace,
                            env=program_env(ANTHROPIC_BASE_URL=server.url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run(workspace: Path, replies: list[dict], *args: str) -> tuple[int, str, str, ScriptedServer]:
    server = ScriptedServer(replies)
    with server:
        process = _start(workspace, server, *args)
        out, err = process.communicate(timeout=60)
    _assert_sane(err, server)
    return process.returncode, out, err, server


def _assert_sane(err: str, server: ScriptedServer) -> None:
    assert "Traceback" not in err, err
    for number, request in enumerate(server.requests):
        assert history_problems(request["body"]["messages"]) == [], (number, err)


# -- commands run once, whatever the number of drops ----------------------------------------------

@pytest.mark.parametrize("drops", [2, 3])
def test_consecutive_drops_after_a_command_run_it_once(workspace, drops):
    command = ToolUse("t1", "bash", {"command": "echo ran >> count.txt"})
    broken = [drop_after_block(reply(command, Text("and more")), 0) for _ in range(drops)]
    code, _, err, server = _run(workspace, [*broken, reply(command), reply(Text("done"))], "-p", "count")
    assert code == 0, err
    assert (workspace / "count.txt").read_text() == "ran\n"
    assert len(server.requests) == drops + 2


def test_a_write_then_a_command_on_it_then_a_drop_keeps_both(workspace):
    write = ToolUse("t1", "write_file", {"path": "out.txt", "content": "written\n"})
    command = ToolUse("t2", "bash", {"command": "echo appended >> out.txt"})
    more = Text("more", chunk=1, delay=0.15)  # both calls have run when the reply breaks off after it
    replies = [drop_after_block(reply(write, command, more), 2),
               drop_after_block(reply(write, command, more), 2),
               reply(write, command), reply(Text("done"))]
    code, _, err, _ = _run(workspace, replies, "-p", "write then append")
    assert code == 0, err
    assert (workspace / "out.txt").read_text() == "written\nappended\n"
    assert "left as a command changed them: out.txt" in err


# -- killed during a tool, then continued again and again -----------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_killed_during_a_tool_then_continued_three_times(workspace, signum):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    command = f"touch started.flag; python3 -c 'import time; time.sleep(60)' {marker}"
    first = ScriptedServer([reply(Text("Running it."), ToolUse("t1", "bash", {"command": command}))])
    with first:
        process = _start(workspace, first, "-p", "run the slow thing")
        try:
            assert wait_until(lambda: (workspace / "started.flag").exists() and reply_committed(), 20)
        finally:
            process.send_signal(signum)
            process.communicate(timeout=30)
            subprocess.run(["pkill", "-f", marker])
    for number in range(3):
        code, _, err, server = _run(workspace, [reply(Text(f"Resumed {number}."))],
                                    "--continue", "-p", f"what happened? ({number})")
        assert code == 0, err
        messages = server.requests[0]["body"]["messages"]
        assert messages[2]["content"][0]["tool_use_id"] == "t1"  # answered once, for good
        assert [m["role"] for m in messages] == ["user", "assistant", "user", *["assistant", "user"] * number]


def test_a_crash_mid_reply_is_told_to_the_model_and_the_person(workspace):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    command = f"echo one > made.txt; touch started.flag; python3 -c 'import time; time.sleep(60)' {marker}"
    never_ends = reply(ToolUse("t1", "write_file", {"path": "notes.txt", "content": "x\n"}),
                       ToolUse("t2", "bash", {"command": command}), Text("still talking"))
    never_ends["stall_after"], never_ends["stall"] = len(never_ends["events"]) - 4, 30
    first = ScriptedServer([never_ends])
    with first:
        process = _start(workspace, first, "-p", "go")
        try:
            assert wait_until(lambda: (workspace / "started.flag").exists(), 20)
        finally:
            process.kill()
            process.communicate(timeout=30)
            subprocess.run(["pkill", "-f", marker])
    code, _, err, server = _run(workspace, [reply(Text("I see."))], "--continue", "-p", "what happened?")
    assert code == 0, err
    assert "never completed" in err and "notes.txt" in err
    told = server.requests[0]["body"]["messages"][-1]["content"]
    note = next(b["text"] for b in told if "never completed" in b.get("text", ""))
    assert "bash echo one > made.txt" in note and "write_file notes.txt" in note and "changed notes.txt" in note
    code, _, err, server = _run(workspace, [reply(Text("Still fine."))], "--continue", "-p", "again")
    assert code == 0 and "never completed" not in err  # told once


# -- two agents, one session ----------------------------------------------------------------------

def test_a_second_agent_continuing_a_session_in_use_is_refused_clearly(workspace):
    code, _, err, _ = _run(workspace, [reply(Text("hello"))], "-p", "start")
    assert code == 0, err
    command = "touch started.flag; sleep 2"
    busy = ScriptedServer([reply(ToolUse("t1", "bash", {"command": command})), reply(Text("first done"))])
    with busy:
        first = _start(workspace, busy, "--continue", "-p", "work")
        assert wait_until(lambda: (workspace / "started.flag").exists(), 20)
        code, _, err, second = _run(workspace, [reply(Text("never"))], "--continue", "-p", "me too")
        first_out, first_err = first.communicate(timeout=30)
    assert code == 2 and "is open in another midstream (pid" in err and second.requests == []
    assert first.returncode == 0, first_err
    code, _, err, server = _run(workspace, [reply(Text("after"))], "--continue", "-p", "now me")
    assert code == 0, err
    assert [m["role"] for m in server.requests[0]["body"]["messages"]] == ["user", "assistant"] * 3 + ["user"]


# -- malformed events: retried, never a traceback --------------------------------------------------

def _start_event() -> dict:
    return reply(Text("x"))["events"][0]


def _tool_start(index: int, tool_id: str | None) -> dict:
    block = {"type": "tool_use", "name": "bash", "input": {}} | ({"id": tool_id} if tool_id is not None else {})
    return {"type": "content_block_start", "index": index, "content_block": block}


MALFORMED = {
    "block start without its block": [{"type": "content_block_start", "index": 0}],
    "delta without index": [{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a"}}],
    "text_delta without text": [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}],
    "index that is a string": [
        {"type": "content_block_start", "index": "0", "content_block": {"type": "text", "text": ""}}],
    "delta before its block's start": [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "early"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_stop", "index": 0}],
    "second start at a tool's index": [_tool_start(0, "t1"), _tool_start(0, "t2")],
    "tool_use without an id": [_tool_start(0, None)],
    "duplicate tool_use ids": [
        _tool_start(0, "t1"), {"type": "content_block_stop", "index": 0},
        _tool_start(1, "t1"), {"type": "content_block_stop", "index": 1}],
    "event that is not an object": [{"type": "ping", "_raw": True}],
}


@pytest.mark.parametrize("shape", sorted(MALFORMED))
def test_a_malformed_event_is_retried_without_a_traceback(workspace, shape):
    events = [_start_event(), *MALFORMED[shape],
              {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
              {"type": "message_stop"}]
    bad = {"events": events}
    if shape == "event that is not an object":
        bad = {"sse": "event: message_start\ndata: [1, 2]\n\n"}
    code, out, err, server = _run(workspace, [bad, reply(Text("fine after all"))], "-p", "hi")
    assert code == 0, err
    assert len(server.requests) == 2 and "fine after all" in out
    assert server.requests[0]["body"]["messages"] == server.requests[1]["body"]["messages"]


def test_a_body_that_lies_about_gzip_is_retried(workspace):
    lying = reply(Text("never seen")) | {"headers": {"content-encoding": "gzip"}}
    code, out, err, server = _run(workspace, [lying, reply(Text("fine"))], "-p", "hi")
    assert code == 0 and "fine" in out and len(server.requests) == 2, err


def test_a_tool_id_used_in_an_earlier_reply_is_a_malformed_reply(workspace):
    first = ToolUse("t1", "bash", {"command": "echo one >> ids.txt"})
    again = ToolUse("t1", "bash", {"command": "echo two >> ids.txt"})
    fixed = ToolUse("t2", "bash", {"command": "echo two >> ids.txt"})
    code, _, err, server = _run(workspace, [reply(first), reply(again), reply(fixed), reply(Text("done"))],
                                "-p", "ids")
    assert code == 0, err
    assert "malformed reply: tool_use id t1 used twice" in err
    assert (workspace / "ids.txt").read_text() == "one\ntwo\n"  # the retry reused the command's result


# -- replies the API would refuse if committed as they are -----------------------------------------

def test_a_refusal_with_an_empty_text_block_commits_no_reply(workspace):
    code, _, err, _ = _run(workspace, [reply(Text(""), stop_reason="refusal")], "-p", "something bad")
    assert code == 3, err
    code, _, err, server = _run(workspace, [reply(Text("ok"))], "--continue", "-p", "something fine")
    assert code == 0, err
    assert [m["role"] for m in server.requests[0]["body"]["messages"]] == ["user"]


def test_max_tokens_inside_the_only_tool_use_commits_no_reply(workspace):
    cut = reply(ToolUse("t1", "bash", raw_json='{"command": "echo nev'), stop_reason="max_tokens")
    code, _, err, _ = _run(workspace, [cut], "-p", "go")
    assert code == 1 and "max_tokens" in err
    assert not (workspace / "nev").exists()
    code, _, err, server = _run(workspace, [reply(Text("ok"))], "--continue", "-p", "shorter please")
    assert code == 0, err
    assert [m["role"] for m in server.requests[0]["body"]["messages"]] == ["user"]


# -- bounded waiting -------------------------------------------------------------------------------

def test_a_stream_that_pings_forever_ends_at_the_request_timeout(workspace):
    pinging = {"events": [_start_event(), *({"type": "ping", "_delay": 0.1} for _ in range(600))]}
    code, out, err, server = _run(workspace, [pinging, reply(Text("at last"))],
                                  "--request-timeout", "1", "--idle-timeout", "30", "-p", "hi")
    assert code == 0 and "at last" in out, err
    assert "took longer than the request time limit (1 s, --request-timeout)" in err


@pytest.mark.parametrize("value", ["soon", "", "nan", "-5", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_retry_after_garbage_or_past_is_ignored(workspace, value):
    busy = {"status": 529, "headers": {"retry-after": value}, "error": {"type": "overloaded_error", "message": "b"}}
    code, out, err, _ = _run(workspace, [busy, reply(Text("served"))], "-p", "hi")
    assert code == 0 and "served" in out, err


def test_retry_after_as_an_http_date_is_honoured(workspace):
    when = email.utils.formatdate(time.time() + 5, usegmt=True)  # whole seconds; the program starts first
    busy = {"status": 429, "headers": {"retry-after": when}, "error": {"type": "rate_limit_error", "message": "b"}}
    code, _, err, server = _run(workspace, [busy, reply(Text("served"))], "-p", "hi")
    assert code == 0, err
    assert server.requests[1]["time"] - server.requests[0]["time"] >= 2.0


@pytest.mark.parametrize(("value", "said"), [("86400", "24.0 h"), ("1e309", "an unbounded time")])
def test_a_huge_retry_after_ends_the_turn_naming_the_wait(workspace, value, said):
    busy = {"status": 529, "headers": {"retry-after": value}, "error": {"type": "overloaded_error", "message": "b"}}
    code, _, err, server = _run(workspace, [busy, reply(Text("never"))], "-p", "hi")
    assert code == 1 and f"the service asked to wait {said} before retrying" in err
    assert len(server.requests) == 1


# -- framing ---------------------------------------------------------------------------------------

def test_cr_only_framing_completes(workspace):
    code, out, err, _ = _run(workspace, [reply(Text("carriage returns only")) | {"line_ending": "\r"}], "-p", "hi")
    assert code == 0 and "carriage returns only" in out, err


def test_stale_temporary_files_of_a_killed_write_are_removed_at_start(workspace):
    stale = workspace / "src" / ".big.txt.a1b2c3d4.midstream"
    stale.parent.mkdir()
    stale.write_text("half a file")
    os.utime(stale, (time.time() - 10, time.time() - 10))
    unrelated = workspace / "src" / ".keep.midstream"
    unrelated.write_text("not ours")
    # The walk runs beside the first reply (which takes a second here, as a real one does); the exit does
    # not wait for it: a session over before it ends leaves the rest to the next one.
    code, _, err, _ = _run(workspace, [reply(Text("hi there", chunk=2, delay=0.25))], "-p", "hi")
    assert code == 0, err
    assert wait_until(lambda: not stale.exists(), 5)
    assert unrelated.exists()


def test_with_the_sandbox_a_commands_children_die_with_a_killed_agent(workspace):
    from midstream.sandbox.isolation import bwrap_works

    assert bwrap_works(), "bubblewrap is installed on the machines this suite runs on"
    marker = f"midstream-test-{uuid.uuid4().hex}"
    command = (f"(setsid -f python3 -c 'import time; time.sleep(120)' {marker}-child > /dev/null 2>&1); "
               f"touch started.flag; python3 -c 'import time; time.sleep(120)' {marker}")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": command}))])

    def running() -> list[str]:
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
        return [pid for pid in found if int(pid) != os.getpid()]

    with server:
        process = subprocess.Popen([sys.executable, "-m", "midstream", "--isolation", "bwrap", "--grace", "0",
                                    "-p", "go"], cwd=workspace, env=program_env(ANTHROPIC_BASE_URL=server.url),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:  # the flag is in the command's copy-on-write view: not in the workspace until the command ends
            assert wait_until(lambda: len(running()) >= 2, 30)
        finally:
            process.kill()
            process.wait(30)
        try:
            assert wait_until(lambda: not running(), 10), running()
        finally:
            subprocess.run(["pkill", "-f", marker])
