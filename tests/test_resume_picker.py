"""``--resume`` and ``/resume`` as a Claude Code or Codex user drives them: a list to move through on a
terminal (a real pty read through pyte at 80 and 120 columns), a numbered list without one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from midstream.tools.cli.picker import Picker
from midstream.tools.cli.sessions import list_sessions
from midstream.tools.conversation.transcript import Transcript
from midstream.tools.testing.scripted_server import ScriptedServer, Text, reply

from tests.helpers import Terminal, program_env

pytestmark = pytest.mark.process

# Oldest first: (what was said, how long ago in seconds).
SAID = [("fix the flaky parser test", 3 * 86400), ("rename the config loader", 7200),
        ("write the changelog entry", 300)]


def three_sessions(workspace: Path) -> list[str]:
    """Three sessions of two exchanges each, as midstream writes them; their ids, oldest first."""
    ids = []
    now = time.time()
    for words, ago in SAID:
        transcript = Transcript.create(workspace, "claude-test")
        for role, text in (("user", words), ("assistant", f"done: {words}"),
                           ("user", f"and more on {words.split()[1]}"), ("assistant", "ok")):
            transcript.append({"role": role, "content": [{"type": "text", "text": text}]})
        transcript.close()
        os.utime(transcript.path, (now - ago, now - ago))
        ids.append(transcript.id)
    return ids


def on_disk(workspace: Path) -> dict[str, tuple[int, int]]:
    folder = Transcript.sessions(workspace)[0].parent
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def first_said(server: ScriptedServer) -> str:
    """The first thing the person said in the first request the server got: whose history it carries."""
    return server.requests[0]["body"]["messages"][0]["content"][0]["text"]


def open_picker(server: ScriptedServer, workspace: Path, columns: int) -> Terminal:
    term = Terminal(server, workspace, columns, "--resume")
    term.shows("fix the flaky parser")  # the last row is drawn
    return term


def resume_and_send(term: Terminal, session_id: str) -> None:
    term.expect(f"resumed session {session_id}")
    term.prompt()
    term.child.send("go on\r")
    term.expect("carried on")
    term.leave()


@pytest.mark.parametrize("columns", [80, 120])
def test_enter_at_once_resumes_the_newest(workspace, columns):
    ids = three_sessions(workspace)
    server = ScriptedServer([reply(Text("carried on"))])
    with server:
        term = open_picker(server, workspace, columns)
        screen = term.screen()
        rows = [row for row in screen if "msgs" in row]
        assert len(rows) == 3 and all(len(row) < columns for row in rows), screen
        assert rows[0].startswith("›") and "write the changelog" in rows[0], screen  # newest first, highlighted
        assert "5 min ago" in rows[0] and "2 msgs" in rows[0] and "and more on the" in rows[0], rows[0]
        assert "3 d ago" in rows[2] and "fix the flaky parser test" in rows[2], rows
        term.child.send("\r")
        resume_and_send(term, ids[2])
    assert first_said(server) == "write the changelog entry"
    assert len(server.requests[0]["body"]["messages"]) == 5  # its two exchanges, then "go on"
    assert not any("Enter resumes" in row for row in term.screen())  # the picker is erased once done


@pytest.mark.parametrize("columns", [80, 120])
def test_down_down_enter_resumes_the_oldest(workspace, columns):
    ids = three_sessions(workspace)
    server = ScriptedServer([reply(Text("carried on"))])
    with server:
        term = open_picker(server, workspace, columns)
        term.child.send("\x1b[B")
        term.child.send("j")  # j moves too, while nothing is typed
        term.child.send("\r")
        resume_and_send(term, ids[0])
    assert first_said(server) == "fix the flaky parser test"


@pytest.mark.parametrize("columns", [80, 120])
def test_typing_filters_to_one_row_and_enter_resumes_it(workspace, columns):
    ids = three_sessions(workspace)
    server = ScriptedServer([reply(Text("carried on"))])
    with server:
        term = open_picker(server, workspace, columns)
        term.child.send("config")
        term.shows("filter: config")
        rows = [row for row in term.shows("1 of 3") if "msgs" in row]
        assert len(rows) == 1 and rows[0].startswith("›") and "rename the config loader" in rows[0], term.screen()
        term.child.send("\r")
        resume_and_send(term, ids[1])
    assert first_said(server) == "rename the config loader"


@pytest.mark.parametrize(("columns", "key"), [(80, "\x1b"), (120, "\x1b"), (80, "\x03")])
def test_esc_cancels_with_one_line_exit_130_and_nothing_changed(workspace, columns, key):
    three_sessions(workspace)
    before = on_disk(workspace)
    server = ScriptedServer([])
    with server:
        term = open_picker(server, workspace, columns)
        term.child.send(key)  # Esc, or Ctrl-C
        term.finish()
    assert term.child.exitstatus == 130
    assert on_disk(workspace) == before
    assert not server.requests
    said = [row for row in term.lines() if row]
    assert said == ["midstream: no session resumed (cancelled); nothing was changed"], said


def test_an_empty_list_is_one_line_and_a_new_session(workspace):
    server = ScriptedServer([reply(Text("fresh"))])
    with server:
        term = Terminal(server, workspace, 80, "--resume")
        term.prompt()
        term.child.send("hello\r")
        term.expect("fresh")
        term.leave()
    rows = term.lines()
    assert sum("no earlier sessions in" in row for row in rows) == 1 and str(workspace) in "".join(rows), rows
    assert not any("Traceback" in row for row in rows)


@pytest.mark.parametrize("columns", [80, 120])
def test_slash_resume_picks_among_the_other_sessions_and_esc_returns_to_the_prompt(workspace, columns):
    ids = three_sessions(workspace)
    server = ScriptedServer([reply(Text("hello there")), reply(Text("still here")), reply(Text("carried on"))])
    with server:
        term = Terminal(server, workspace, columns, "a new topic")
        term.expect("hello there")
        term.prompt()
        term.child.send("/resume\r")
        rows = [row for row in term.shows("fix the flaky parser") if "msgs" in row]
        assert len(rows) == 3, rows  # the session we are in is not among them
        term.child.send("\x1b")
        term.expect("no session resumed")
        term.prompt()
        term.child.send("still there?\r")
        term.expect("still here")
        term.prompt()
        term.child.send("/resume\r")
        term.shows("fix the flaky parser")
        term.child.send("\r")
        resume_and_send(term, ids[2])
    assert len(server.requests[1]["body"]["messages"]) == 3  # the new topic's conversation went on
    assert server.requests[2]["body"]["messages"][0]["content"][0]["text"] == "write the changelog entry"


# -- without a terminal to draw on: a numbered list --------------------------------------------------


def plain_turn(term: Terminal) -> None:
    """After the resumed notice: one message answered, then Ctrl-D at the prompt."""
    term.expect("› and more on")  # the last exchange, in the notice
    term.prompt()
    term.child.send("go on\r")
    term.expect("carried on")
    term.leave()


@pytest.mark.parametrize("how", [("--plain",), ("TERM=dumb",)])
def test_a_numbered_list_where_enter_takes_the_newest(workspace, how):
    ids = three_sessions(workspace)
    env = dict(arg.split("=", 1) for arg in how if "=" in arg)
    server = ScriptedServer([reply(Text("carried on"))])
    with server:
        term = Terminal(server, workspace, 100, "--resume", *[a for a in how if "=" not in a], **env)
        term.expect("resume which")
        listing = term.lines()
        numbered = [row for row in listing if row.lstrip()[:2] in ("1.", "2.", "3.")]
        assert [ids[2] in numbered[0], ids[1] in numbered[1], ids[0] in numbered[2]] == [True] * 3, listing
        term.child.send("\r")
        term.expect(f"resumed session {ids[2]}")
        plain_turn(term)
    assert first_said(server) == "write the changelog entry"


def test_a_number_or_an_id_picks_and_anything_else_is_one_line(workspace):
    ids = three_sessions(workspace)
    server = ScriptedServer([reply(Text("carried on"))])
    with server:
        term = Terminal(server, workspace, 100, "--resume", "--plain")
        term.expect("resume which")
        term.child.send("banana\r")
        term.expect("no session 'banana' here")
        term.expect("resume which")
        term.child.send("7\r")
        term.expect("no session '7' here")
        term.child.send(f"{ids[1]}\r")
        term.expect(f"resumed session {ids[1]}")
        plain_turn(term)
    assert first_said(server) == "rename the config loader"
    rows = term.lines()
    assert sum("banana" in row for row in rows) == 2, rows  # as typed, and the line about it
    assert not any("Traceback" in row for row in rows), rows
    term = Terminal(server, workspace, 100, "--resume", "--plain")
    term.expect("resume which")
    before = on_disk(workspace)
    term.child.sendeof()  # the end of input: nothing picked
    term.finish()
    assert term.child.exitstatus == 130 and on_disk(workspace) == before


def test_without_a_terminal_on_stdin_the_list_is_printed(workspace):
    import subprocess
    import sys

    ids = three_sessions(workspace)
    done = subprocess.run([sys.executable, "-m", "midstream", "--resume"], cwd=workspace, capture_output=True,
                          text=True, env=program_env(ANTHROPIC_BASE_URL="http://127.0.0.1:9"), timeout=30,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert [ids[2] in done.stdout.splitlines()[0], ids[0] in done.stdout.splitlines()[2]] == [True, True]


# -- the picker's state and the listing, without a terminal -----------------------------------------


def test_the_picker_moves_filters_and_keeps_j_and_k_for_a_filter_after_a_slash(workspace):
    three_sessions(workspace)
    picker = Picker(list_sessions(workspace))
    assert picker.chosen().first_message == "write the changelog entry"
    picker.type("jjj")
    assert picker.chosen().first_message == "fix the flaky parser test"  # stops at the last row
    picker.type("k")
    assert picker.chosen().first_message == "rename the config loader"
    picker.type("/jk")
    assert picker.filter == "jk" and picker.rows() == [] and picker.chosen() is None
    picker.erase(), picker.erase()
    picker.type("PARSER flaky")
    assert [s.first_message for s in picker.rows()] == ["fix the flaky parser test"]
    lines = picker.lines(40, 10)
    assert all(len(text) <= 40 for _, text in lines), lines


def test_a_damaged_session_is_listed_with_what_is_known(workspace):
    ids = three_sessions(workspace)
    folder = Transcript.sessions(workspace)[0].parent
    (folder / "20000101-000000-bad001.jsonl").write_bytes(b"\xff\xfe not a transcript\n{\"type\": \"message\", "
                                                          b"\"message\": [\"user\"]}\n")
    with (folder / f"{ids[1]}.jsonl").open("ab") as damaged:
        damaged.write(b"{\"user\": \xff}\n")
    (folder / "20000101-000000-empty1.jsonl").write_text("")  # left before its first message: not listed
    listed = {s.id: s for s in list_sessions(workspace)}
    assert set(listed) == {*ids, "20000101-000000-bad001"}
    assert listed["20000101-000000-bad001"].summary() == "(no readable message: 2 lines could not be read)"
    assert listed[ids[1]].summary().endswith("(1 line could not be read)")
    assert listed[ids[1]].messages == 2


def test_a_message_beside_tool_results_or_in_compact_json_is_found(workspace):
    three_sessions(workspace)
    folder = Transcript.sessions(workspace)[0].parent
    record = {"type": "message", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "x" * 5000},
        {"type": "text", "text": "typed while the tools ran"}]}}
    (folder / "20000101-000000-mixed1.jsonl").write_text(json.dumps(record, separators=(",", ":")) + "\n")
    listed = {s.id: s for s in list_sessions(workspace)}
    assert listed["20000101-000000-mixed1"].first_message == "typed while the tools ran"
    assert listed["20000101-000000-mixed1"].messages == 1 and not listed["20000101-000000-mixed1"].problem


def test_what_a_session_holds_is_shown_in_the_picker_never_obeyed(workspace):
    transcript = Transcript.create(workspace, "claude-test")
    hostile = "evil \x1b]52;c;cGF3bmVk\x07\x1b[2J\u202etxt.py"
    transcript.append({"role": "user", "content": [{"type": "text", "text": hostile}]})
    transcript.close()
    lines = Picker(list_sessions(workspace)).lines(120, 10)
    row = lines[-1][1]
    assert "\x1b" not in row and "\x07" not in row and "\u202e" not in row and "^[" in row and "<U+202E>" in row, row
