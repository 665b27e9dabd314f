"""Escape sequences in file names and commands are shown, never obeyed, wherever they reach the terminal.

The names and commands carry OSC 52 (set the clipboard), a window-title sequence and cursor
movement that would erase the line naming the real command. The real program; a pty read through
pyte for the interactive sinks (the ask question, /undo).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pexpect
import pyte
import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
from midstream.tools.ui.sanitise import shown

from tests.helpers import program_env, spawn

pytestmark = pytest.mark.process

CLIPBOARD = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # OSC 52: put "echo pwned" on the clipboard
TITLE = "\x1b]0;owned\x07"
ERASE = "\x1b[1A\x1b[2K\r"  # up one line, erase it
NAME = f"notes{CLIPBOARD}{TITLE}.txt"
COMMAND = f"echo hello # {ERASE}{ERASE}harmless"


class Screen:
    """The program in a pty (helpers.spawn); what it wrote, replayed into a pyte screen with scrollback."""

    def __init__(self, server: ScriptedServer, workspace: Path, *args: str) -> None:
        self.child = spawn(server, workspace, *args, dimensions=(30, 100))
        self.written = io.StringIO()
        self.child.logfile_read = self.written

    def expect(self, pattern: str) -> None:
        self.child.expect(pattern)

    def finish(self) -> None:
        self.child.sendeof()
        self.child.expect(pexpect.EOF)
        self.child.close()

    def rows(self) -> list[str]:
        screen = pyte.HistoryScreen(100, 30, history=10_000)
        pyte.Stream(screen).feed(self.written.getvalue())
        rows = ["".join(line[x].data for x in range(100)).rstrip() for line in screen.history.top]
        return rows + [line.rstrip() for line in screen.display]


def test_the_sanitiser_shows_every_control_and_bidi_override():
    assert shown("a\x1b[2Kb\x07c\x9bd\u202ee\tf\ng") == "a^[[2Kb^Gc<9b>d<U+202E>e\tf\ng"
    assert shown("a\nb", one_line=True) == "a^Jb"
    assert shown("plain text, ünïcode, עברית") == "plain text, ünïcode, עברית"


def _run(workspace: Path, server: ScriptedServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midstream", *args], cwd=workspace,
                          env=program_env(ANTHROPIC_BASE_URL=server.url), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_p_text_output_and_undo_show_escapes_instead_of_obeying_them(workspace):
    server = ScriptedServer([
        reply(ToolUse("t1", "write_file", {"path": NAME, "content": "x\n"}),
              ToolUse("t2", "bash", {"command": COMMAND})),
        reply(Text(f"Done with {NAME}.")),
    ])
    with server:
        done = _run(workspace, server, "-p", "go", "--mode", "auto", "--isolation", "none")
    assert done.returncode == 0, done.stderr
    assert (workspace / NAME).exists()  # the file really has that name
    for stream in (done.stdout, done.stderr):
        assert "\x1b" not in stream and "\x07" not in stream, stream
    assert "notes^[]52;c;ZWNobyBwd25lZA==^G" in done.stderr and "echo hello # ^[[1A^[[2K" in done.stderr
    assert "Done with notes^[]52" in done.stdout
    undone = subprocess.run([sys.executable, "-m", "midstream", "--undo"], cwd=workspace, env=program_env(),
                            capture_output=True, text=True, timeout=60)
    assert "\x1b" not in undone.stderr and "\x07" not in undone.stderr, undone.stderr
    assert "notes^[]52" in undone.stderr, undone.stderr
    assert not (workspace / NAME).exists()


def test_the_ask_question_and_slash_undo_on_a_real_terminal(workspace):
    server = ScriptedServer([
        reply(ToolUse("t1", "write_file", {"path": NAME, "content": "x\n"})),
        reply(Text("written")),
    ])
    with server:
        term = Screen(server, workspace, "--mode", "ask")
        term.expect("› ")
        term.child.sendline("go")
        term.expect(r"\[a\]lways this session: ")
        term.child.sendline("y")
        term.expect("written")
        term.expect("› ")
        term.child.sendline("/undo")
        term.expect(r"notes\^\[\]52")  # the undo report names the file (the prompt redraws "› " on Enter)
        term.expect("› ")
        term.finish()
    raw = term.written.getvalue()
    assert "\x1b]52" not in raw and "\x1b]0;owned" not in raw  # never sent to the terminal as a sequence
    rows = term.rows()
    question = [row for row in rows if "[y]es" in row]
    assert question and "notes^[]52;c;ZWNobyBwd25lZA==^G^[]0;owned^G.txt" in question[0], rows
    assert any("notes^[]52" in row for row in rows[rows.index(question[0]) + 1:] if "written" not in row)
    assert not (workspace / NAME).exists(), rows  # /undo took it back


def test_a_command_with_cursor_movement_cannot_erase_the_line_naming_it(workspace):
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": COMMAND})), reply(Text("ran it"))])
    with server:
        term = Screen(server, workspace, "--mode", "auto")
        term.expect("› ")
        term.child.sendline("go")
        term.expect("ran it")
        term.expect("› ")
        term.finish()
    rows = term.rows()
    assert any("echo hello # ^[[1A^[[2K" in row for row in rows), rows
