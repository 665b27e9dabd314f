"""The prompt as a daily driver, in a real pty read through pyte at 80 and 120 columns: a pasted block is one
message, Esc never eats a key, Tab completes, ``@path`` attaches, Esc at a question stops the turn, and no
terminal (``--plain``, ``TERM=dumb``, a pipe) is no traceback."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pexpect
import pyte
import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env

pytestmark = pytest.mark.process

ROWS = 30
PASTE_ON, PASTE_START, PASTE_END = b"\x1b[?2004h", b"\x1b[200~", b"\x1b[201~"


def _env(server: ScriptedServer, **extra: str) -> dict[str, str]:
    return program_env(**({"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"} | extra))


class Terminal:
    """The program in a pty; its bytes replayed into a pyte screen with scrollback on demand."""

    def __init__(self, server: ScriptedServer, workspace: Path, columns: int, *args: str, **env: str) -> None:
        self.columns = columns
        self.bytes = io.BytesIO()
        mode = [] if "--mode" in args else ["--mode", "auto"]
        self.child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", *mode, *args],
                                   cwd=str(workspace), env=_env(server, **env), dimensions=(ROWS, columns),
                                   timeout=20)
        self.child.logfile_read = self.bytes

    def expect(self, pattern: str | bytes) -> None:
        self.child.expect(pattern.encode() if isinstance(pattern, str) else pattern)

    def prompt(self) -> None:
        self.child.expect_exact(PASTE_ON)  # the prompt is drawn and listens, bracketed paste on
        self.expect("› ")

    def leave(self) -> None:
        self.prompt()
        self.child.sendeof()
        self.child.expect(pexpect.EOF)
        self.child.close()
        assert self.child.exitstatus == 0

    def lines(self) -> list[str]:
        screen = pyte.HistoryScreen(self.columns, ROWS, history=100_000)
        pyte.ByteStream(screen).feed(self.bytes.getvalue())
        rows = ["".join(line[x].data for x in range(self.columns)).rstrip() for line in screen.history.top]
        rows += [line.rstrip() for line in screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows


def sent(server: ScriptedServer, number: int = 0) -> str:
    """The person's text in request ``number`` (its last user message), context note stripped."""
    blocks = server.requests[number]["body"]["messages"][-1]["content"]
    text = "".join(b["text"] for b in blocks if b["type"] == "text" and not b["text"].startswith("<context>"))
    return text.split("</context>")[-1]


@pytest.mark.parametrize("columns", [80, 120])
def test_a_43_line_paste_is_one_message_shown_folded(workspace, columns):
    pasted = "".join(f"  File \"app.py\", line {i}, in handler number {i}\n" for i in range(1, 44))
    server = ScriptedServer([reply(Text("One traceback, read.")), reply(Text("bye then"))])
    with server:
        term = Terminal(server, workspace, columns)
        term.prompt()
        term.child.send(b"look at this: " + PASTE_START + pasted.replace("\n", "\r").encode() + PASTE_END)
        term.expect(r"\[pasted 43 lines\]")
        term.child.send("\r")
        term.expect("One traceback, read.")
        term.prompt()
        term.child.send("\x1b")  # Esc at the prompt, then a word in the same read: not Meta-b
        term.child.send("bye\r")
        term.expect("bye then")
        term.leave()
    assert len(server.requests) == 2
    assert sent(server, 0) == "look at this: " + pasted.rstrip("\n")
    assert sent(server, 1) == "bye"
    rows = term.lines()
    assert "› look at this: [pasted 43 lines]" in rows, rows
    assert not any("handler number 7" in row for row in rows), rows  # folded on screen, whole in the request


@pytest.mark.parametrize("columns", [80, 120])
def test_keys_tab_mentions_newline_and_esc_esc(workspace, columns):
    (workspace / "src").mkdir()
    (workspace / "src" / "app.py").write_text("def handler():\n    return 'the app body'\n")
    server = ScriptedServer([reply(Text("Seen the file.")), reply(Text("Two lines in.")), reply(Text("Cleared."))])
    with server:
        term = Terminal(server, workspace, columns)
        term.prompt()
        term.child.send("/he\t")
        term.expect("/help")
        term.child.send("\r")
        term.expect("Commands:")
        term.prompt()
        term.child.send("explain @src/ap\t")
        term.expect("src/app.py")
        term.child.send(" please\r")
        term.expect("attached 2 lines")
        term.expect("Seen the file.")
        term.prompt()
        term.child.send("line one\x1b\rline two\r")  # Alt-Enter: a new line, not the end of the message
        term.expect("Two lines in.")
        term.prompt()
        term.child.send("throw this away")
        term.child.send("\x1b\x1b")  # Esc Esc clears the line
        term.child.send("kept\r")
        term.expect("Cleared.")
        term.leave()
    assert server.requests[0]["body"]["messages"][-1]["content"]
    first = sent(server, 0)
    assert first.startswith("explain @src/app.py please") and "return 'the app body'" in first
    assert sent(server, 1) == "line one\nline two"
    assert sent(server, 2) == "kept"
    assert len(server.requests) == 3  # /help went to nobody


@pytest.mark.parametrize("columns", [80, 120])
def test_the_task_is_echoed_and_esc_at_a_question_stops_the_turn(workspace, columns):
    (workspace / "a.py").write_text("one\n")
    (workspace / "b.py").write_text("two\n")
    server = ScriptedServer([
        reply(Text("Two edits.\n"),
              ToolUse("e1", "edit_file", {"path": "a.py", "old_string": "one", "new_string": "1"}),
              ToolUse("e2", "edit_file", {"path": "b.py", "old_string": "two", "new_string": "2"})),
        reply(Text("never asked for")),
    ])
    with server:
        term = Terminal(server, workspace, columns, "--mode", "ask", "change both files")
        term.expect(r"\[a\]lways this session")
        term.child.send("\x1b")
        term.expect("interrupted")
        term.leave()
    rows = term.lines()
    assert rows.index("› change both files") < next(i for i, r in enumerate(rows) if r.startswith("Two edits."))
    assert sum("[y]es" in row for row in rows) == 1, rows  # one question, not a second one
    assert (workspace / "a.py").read_text() == "one\n" and (workspace / "b.py").read_text() == "two\n"
    assert len(server.requests) == 1


@pytest.mark.parametrize("how", [("--plain",), ("TERM=dumb",)])
def test_no_terminal_features_no_traceback(workspace, how):
    server = ScriptedServer([reply(Text("Plainly answered.")), reply(Text("Again."))])
    args = [a for a in how if a.startswith("--")]
    env = dict(a.split("=", 1) for a in how if "=" in a)
    with server:
        term = Terminal(server, workspace, 80, *args, **env)
        term.expect("› ")
        term.child.send("hello\r")
        term.expect("Plainly answered.")
        term.expect("› ")
        term.child.send("again\r")
        term.expect("Again.")
        term.expect("› ")
        term.child.sendeof()
        term.child.expect(pexpect.EOF)
        term.child.close()
    assert term.child.exitstatus == 0
    assert b"Traceback" not in term.bytes.getvalue()
    assert [sent(server, 0), sent(server, 1)] == ["hello", "again"]


def _run(workspace: Path, server: ScriptedServer, args: list[str], stdin: bytes | None):
    return subprocess.run([sys.executable, "-m", "midstream", "--isolation", "none", *args], cwd=workspace,
                          env=_env(server), input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=60)


def test_piped_stdin_reaches_the_request(workspace):
    server = ScriptedServer([reply(Text("explained")), reply(Text("also explained"))])
    with server:
        with_p = _run(workspace, server, ["-p", "explain this"], b"line 1\nline 2 \xff\n")
        without_p = _run(workspace, server, ["explain that"], b"piped body\n")
        nothing = _run(workspace, server, [], None)
    assert with_p.returncode == 0 and with_p.stdout == b"explained\n", with_p.stderr
    assert sent(server, 0) == "explain this\n\nline 1\nline 2 \ufffd\n"
    assert without_p.returncode == 0, without_p.stderr  # no terminal to type at: run as -p would
    assert sent(server, 1) == "explain that\n\npiped body\n"
    assert nothing.returncode == 2 and b"Traceback" not in nothing.stderr
    (line,) = nothing.stderr.decode().strip().splitlines()
    assert line.startswith("midstream: stdin is not a terminal") and "-p" in line
    assert len(server.requests) == 2
