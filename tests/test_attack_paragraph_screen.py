"""Soft-broken paragraphs in a real pty read through pyte: every word once, in order, around tools and blocks."""

from __future__ import annotations

import io
import re
import shutil
import sys
from pathlib import Path

import pexpect
import pyte
import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, Thinking, ToolUse, reply

from tests.helpers import program_env

pytestmark = pytest.mark.process

ROWS = 30


def _screen_rows(data: bytes, columns: int) -> list[str]:
    screen = pyte.HistoryScreen(columns, ROWS, history=100_000)
    pyte.ByteStream(screen).feed(data)
    rows = ["".join(line[x].data for x in range(max(line.keys(), default=-1) + 1)).rstrip()
            for line in screen.history.top]
    return rows + [line.rstrip() for line in screen.display]


def _run(workspace: Path, server: ScriptedServer, columns: int, *args: str, provider: str = "anthropic") -> list[str]:
    sink = io.BytesIO()
    env = program_env(ANTHROPIC_BASE_URL=server.url, TERM="xterm")
    if provider == "openai":
        env |= {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_MODEL": "local", "OPENAI_API_KEY": "k"}
        args = ("--provider", "openai", *args)
    with server:
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", "--mode", "auto", *args],
                              cwd=str(workspace), env=env, dimensions=(ROWS, columns), timeout=30)
        child.logfile_read = sink
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0, sink.getvalue().decode(errors="replace")[-2000:]
    return _screen_rows(sink.getvalue(), columns)


def _words(rows: list[str]) -> list[str]:
    return [w for row in rows for w in re.findall(r"\bw\d{3}\b", row)]


def _paragraph(words: list[str], every: int = 5) -> str:
    return "".join(w + ("\n" if i % every == every - 1 else " ") for i, w in enumerate(words)).rstrip() + "\n"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("columns", [80, 120])
def test_paragraphs_around_a_tool_call_thinking_and_blocks_show_every_word_once_in_order(workspace, columns,
                                                                                         provider):
    words = [f"w{i:03d}" for i in range(240)]
    url = "https://example.com/" + "x" * (columns + 30)
    first = (_paragraph(words[:60]) + url + "\n" + _paragraph(words[60:80]) + "漢字かな交じり文 " * 12 + "\n"
             + _paragraph(words[80:100]))  # no blank line: the tool call follows the held last row
    second = (_paragraph(words[100:130], 3) + "| a | b |\n|---|---|\n| w130 | w131 |\n" + _paragraph(words[132:140])
              + "1) w140 one\n* w141 bullet\n" + _paragraph(words[142:150]) + "---\n" + _paragraph(words[150:160])
              + "> w160 quote\n> > w161 nested\n" + _paragraph(words[162:170]) + "```\nw170 code\n```\n"
              + _paragraph(words[171:200]))
    server = ScriptedServer([
        reply(Thinking("pondering the answer"), Text(first, chunk=7), ToolUse("t1", "bash", {"command": "echo w999"})),
        reply(Text(second, chunk=5), Text("\n" + _paragraph(words[200:240]), chunk=3)),
    ])
    rows = _run(workspace, server, columns, "-p", "go", provider=provider)
    seen = _words(rows)
    expected = words[:240]
    assert [w for w in seen if w != "w999"] == expected, "\n".join(rows)
    assert "".join(rows).count("x" * 20) >= 1
    text = "\n".join(rows)
    assert text.count("漢字かな交じり文") == 12, text
    outcome = next(i for i, row in enumerate(rows) if "echo w999" in row)
    assert max(i for i, row in enumerate(rows) if "w099" in row) < outcome, text  # text, then the outcome


def test_a_stream_dropped_right_after_a_paragraph_line_keeps_the_line_in_the_scrollback(workspace):
    """The last row of a paragraph waits in the live region; the stream breaks: the row is printed (struck)."""
    from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes, sse

    events = reply(Text("w001 w002 w003\nw004 w005 w006\n", chunk=64))["events"]
    full = sse(events)
    cut = full[: full.index(b"content_block_stop")]  # the text went out, the block never ended

    def dropped(request, connection):
        connection.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        + f"content-length: {len(full)}\r\n\r\n".encode() + cut)
        return "close"

    sink = io.BytesIO()
    script = Script([dropped, reply_bytes("anthropic", reply(Text("w007 retried"))["events"])])
    with RawServer(script) as server:
        env = program_env(ANTHROPIC_BASE_URL=server.url, TERM="xterm")
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", "-p", "go"],
                              cwd=str(workspace), env=env, dimensions=(ROWS, 80), timeout=30)
        child.logfile_read = sink
        child.expect(pexpect.EOF)
        child.close()
    rows = _screen_rows(sink.getvalue(), 80)
    assert _words(rows) == ["w001", "w002", "w003", "w004", "w005", "w006", "w007"], "\n".join(rows)


def _interactive(workspace: Path, url: str, columns: int = 80, **env_extra: str) -> tuple[pexpect.spawn, io.BytesIO]:
    sink = io.BytesIO()
    env = program_env(ANTHROPIC_BASE_URL=url, TERM="xterm", **env_extra)
    isolation = [] if "PATH" in env_extra else ["--isolation", "none"]
    child = pexpect.spawn(sys.executable, ["-m", "midstream", *isolation, "--mode", "auto"], cwd=str(workspace),
                          env=env, dimensions=(ROWS, columns), timeout=30)
    child.logfile_read = sink
    return child, sink


def test_esc_mid_paragraph_keeps_every_word_streamed_so_far_once(workspace):
    words = [f"w{i:03d}" for i in range(60)]
    server = ScriptedServer([reply(Text(_paragraph(words[:6], 3)), Text(_paragraph(words[6:], 2), chunk=3,
                                                                         delay=0.2)),
                             reply(Text("w900 after"))])
    with server:
        child, sink = _interactive(workspace, server.url)
        child.expect("› ".encode())
        child.sendline("go")
        child.expect("w007")  # the second block has begun; w003-w005 were the first's held row
        child.send("\x1b")
        child.expect("› ".encode())
        child.sendline("again")
        child.expect("w900")
        child.expect("› ".encode())
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
    seen = [w for w in _words(_screen_rows(sink.getvalue(), 80)) if w != "w900"]
    assert seen == words[: len(seen)] and len(seen) >= 8, seen


def test_an_interactive_session_without_a_working_sandbox_warns_before_the_first_prompt(workspace, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("git", "bash", "sh", "env", "cat"):
        if found := shutil.which(program):
            (bin_dir / program).symlink_to(found)
    (bin_dir / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (bin_dir / "bwrap").chmod(0o755)
    server = ScriptedServer([])
    with server:
        child, sink = _interactive(workspace, server.url, PATH=str(bin_dir))
        child.expect("› ".encode())
        shown = sink.getvalue().decode(errors="replace")
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
    assert "unconfined" in shown, shown


def test_a_terminal_widened_mid_paragraph_shows_every_word_once_in_order(workspace):
    """Rows printed at 80 stay; the held row and what follows wrap at 120. (Narrowing: pyte crops, a real
    terminal reflows; not judged here.)"""
    words = [f"w{i:03d}" for i in range(400)]
    server = ScriptedServer([reply(Text(_paragraph(words, 7), chunk=6, delay=0.01))])
    sink, resized = io.BytesIO(), []
    env = program_env(ANTHROPIC_BASE_URL=server.url, TERM="xterm")
    with server:
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", "-p", "go"],
                              cwd=str(workspace), env=env, dimensions=(ROWS, 80), timeout=30)
        child.logfile_read = sink
        child.expect(b"w150")
        child.read_nonblocking(100_000, timeout=0.2)
        resized.append(len(sink.getvalue()))
        child.setwinsize(ROWS, 120)
        child.expect(pexpect.EOF)
        child.close()
    screen = pyte.HistoryScreen(80, ROWS, history=100_000)
    stream = pyte.ByteStream(screen)
    data = sink.getvalue()
    stream.feed(data[: resized[0]])
    screen.resize(ROWS, 120)
    stream.feed(data[resized[0]:])
    rows = ["".join(line[x].data for x in range(max(line.keys(), default=-1) + 1)).rstrip()
            for line in screen.history.top] + [line.rstrip() for line in screen.display]
    assert _words(rows) == words, "\n".join(rows)
    assert any(len(row) > 100 for row in rows)  # after the resize, rows use the new width


@pytest.mark.parametrize("isolation", ["none", "auto"])
def test_undo_at_the_prompt_covers_a_first_message_sent_as_the_prompt_shows(workspace, isolation):
    """Sent the moment the prompt shows: the first turn begins while undo's decision (held until then) is made."""
    from midstream.sandbox.isolation import bwrap_works

    if isolation == "auto" and not bwrap_works():
        pytest.skip("bubblewrap cannot run here")
    (workspace / "keep.txt").write_text("keep\n")
    server = ScriptedServer([reply(ToolUse("t1", "write_file", {"path": "keep.txt", "content": "clobbered\n"}),
                                   ToolUse("t2", "bash", {"command": "echo new > made.txt"})),
                             reply(Text("w100 written"))])
    with server:
        sink = io.BytesIO()
        env = program_env(ANTHROPIC_BASE_URL=server.url, TERM="xterm")
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", isolation, "--mode", "auto",
                                               "--grace", "0"], cwd=str(workspace), env=env,
                              dimensions=(ROWS, 100), timeout=30)
        child.logfile_read = sink
        child.expect("› ".encode())
        child.expect(pexpect.TIMEOUT, timeout=0.5)  # keys sent the instant it shows were lost under load (report)
        child.sendline("go")
        child.expect(b"w100")
        child.expect("› ".encode())
        assert (workspace / "keep.txt").read_text() == "clobbered\n"
        child.sendline("/undo")
        child.expect(b"made.txt")  # its report (the "› " of the line being typed is no new prompt)
        child.expect("› ".encode())
        child.expect(pexpect.TIMEOUT, timeout=0.5)
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
    shown = sink.getvalue().decode(errors="replace")
    assert (workspace / "keep.txt").read_text() == "keep\n", shown[-2000:]
    assert not (workspace / "made.txt").exists(), shown[-2000:]


def test_a_message_typed_before_the_first_prompt_is_kept(workspace):
    server = ScriptedServer([reply(Text("w100 answered"))])
    with server:
        env = program_env(ANTHROPIC_BASE_URL=server.url, TERM="xterm")
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none"], cwd=str(workspace),
                              env=env, dimensions=(ROWS, 100), timeout=10)
        child.send("go\r")  # typed while it starts (a terminal that does not answer the colour query)
        try:
            child.expect(b"w100")
        finally:
            child.sendeof()
            child.close(force=True)
