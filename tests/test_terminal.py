"""The terminal renderer with a capture console, the JSON renderer, and one run in a real pty."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pexpect
import pytest
from midstream.tools import default_registry
from midstream.tools.calls import worded
from midstream.tools.conversation.ledger import Ledger
from midstream.tools.events import (
    BlockStopped,
    RequestStarted,
    RequestUsage,
    TextDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolGrace,
    ToolInputDelta,
    ToolProgress,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)
from midstream.tools.registry import Facts, ToolResult
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
from midstream.tools.ui.terminal import TerminalRenderer
from rich.console import Console

from tests.helpers import program_env

ROOT = Path(__file__).resolve().parent.parent
TOOLS = default_registry()


class Worded(TerminalRenderer):
    """The terminal renderer behind the loop's wording step, as the agent shows events to it."""

    def show(self, event):
        super().show(worded(TOOLS, event))


def make() -> tuple[TerminalRenderer, io.StringIO]:
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=160, color_system="truecolor")
    # A slow refresh: these tests read the region directly instead of racing the refresh thread.
    return Worded(console, refresh_per_second=1), sink


def finished(call_id: str, name: str, args: dict, result: ToolResult, seconds: float) -> ToolFinished:
    """A call's end as the loop reports it: worded by the tool, with the result's facts."""
    wording = TOOLS.get(name).wording
    return ToolFinished(call_id, name, result, seconds, status=wording.status(args), done=wording.done(args))


def region_text(renderer: TerminalRenderer) -> str:
    capture = Console(width=160, record=True, file=io.StringIO())
    capture.print(renderer.region())
    return capture.export_text()


def live_rows(renderer: TerminalRenderer) -> list[str]:
    """The region's rows but the turn's status line (``✻ Working… · esc to interrupt``)."""
    return [row for row in region_text(renderer).splitlines() if row.strip() and "to interrupt" not in row]


def test_each_finished_line_is_printed_once_as_markdown_and_the_unfinished_line_stays_live():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    assert "Thinking…" in region_text(renderer)
    renderer.show(TextDelta(0, "# Title\nSome **bo"))
    region = region_text(renderer)
    assert "Thinking" not in region and "Some **bo" in region  # unclosed: shown as typed
    renderer.show(TextDelta(0, "ld** text\nand `code` on a line"))
    renderer.show(BlockStopped(0, "text"))
    out = sink.getvalue()  # the live region's redraws are in here too; look for the printed lines
    assert "\x1b[1;4mTitle\x1b[0m\n" in out  # the heading, rendered, left-aligned
    # one paragraph: its single newline is a soft break, the two lines are joined
    assert "Some \x1b[1mbold\x1b[0m text and \x1b[1;36mcode\x1b[0m on a line\n" in out
    assert out.count("Title") == 1  # printed once, never redrawn
    assert live_rows(renderer) == []  # only the status line is left
    renderer.show(TurnEnded("end_turn", True))


def test_a_code_block_prints_line_by_line_highlighted():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(TextDelta(0, "Here:\n```python\ndef f():\n    return 1\n"))
    assert "def" in sink.getvalue() and "\x1b[J" in sink.getvalue()
    printed = sink.getvalue()
    renderer.show(TextDelta(0, "```\nafter\n"))
    renderer.show(BlockStopped(0, "text"))
    assert sink.getvalue().startswith(printed)  # nothing printed before is written again
    assert sink.getvalue().count("return") == 1
    assert "after\n" in sink.getvalue()
    renderer.show(TurnEnded("end_turn", True))


def test_tool_status_lines_fill_in_run_and_are_replaced_by_outcomes():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(ToolCallStarted(0, "a", "read_file"))
    renderer.show(ToolInputDelta("a", '{"path": "src/ap'))
    assert "Reading src/ap…" in region_text(renderer)
    renderer.show(ToolInputDelta("a", 'p.py"}'))
    renderer.show(ToolCallReady(0, "a", "read_file", {"path": "src/app.py"}))
    renderer.show(ToolCallStarted(1, "b", "bash"))
    renderer.show(ToolCallReady(1, "b", "bash", {"command": "pytest -q"}))
    renderer.show(ToolRunning("a", "read_file", "Reading src/app.py"))
    renderer.show(ToolRunning("b", "bash", "Running `pytest -q`"))
    renderer.show(ToolProgress("b", "collected 12 items"))
    region = region_text(renderer)
    assert "Reading src/app.py" in region and "Running `pytest -q`" in region
    assert "collected 12 items" in region and " s" in region  # last output line and elapsed time
    renderer.show(finished("a", "read_file", {"path": "src/app.py"},
                           ToolResult("     1\tx\n     2\ty", facts=Facts(lines=2, detail="2 lines")), 0.01))
    region = region_text(renderer)
    assert "Reading" not in region and "Running `pytest -q`" in region
    assert "✓ Read src/app.py (2 lines)" in sink.getvalue()
    renderer.show(finished("b", "bash", {"command": "pytest -q"}, ToolResult(
        "..F\n1 failed, 11 passed\n[exit status 1]", True, Facts("failed", 1, detail="1 failed, 11 passed")), 2.0))
    assert "✗ Ran `pytest -q`: exit 1 (1 failed, 11 passed)" in sink.getvalue()
    assert live_rows(renderer) == []  # only the status line is left
    renderer.show(TurnEnded("end_turn", True))


def test_an_edit_shows_its_diff_and_a_grace_window_counts_down():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(ToolRunning("e", "edit_file", "Editing a.py"))
    diff = "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2"
    renderer.show(finished("e", "edit_file", {"path": "a.py"}, ToolResult(
        f"Edited a.py: replaced 1 occurrence.\n{diff}", facts=Facts(diff=diff)), 0.0))
    out = sink.getvalue()
    assert "✓ Edited a.py" in out and "1 - x = 1" in out and "1 + x = 2" in out  # numbered, both sides
    assert "folded" not in out  # a short diff is shown whole
    renderer.show(ToolGrace("r", "rm -rf build/", ("build/ (1,204 files)",), 3.0))
    region = region_text(renderer)
    assert "rm -rf build/ → build/ (1,204 files)" in region and "runs in" in region and "Ctrl-C" in region
    renderer.show(TurnEnded("end_turn", True))


def test_one_usage_line_per_message_priced_by_the_model_the_server_reported():
    terminal, sink = make()
    renderer = Ledger(terminal)  # as the agent counts usage, once, for every renderer
    usage = {"input_tokens": 1200, "output_tokens": 300, "cache_read_input_tokens": 8000,
             "cache_creation_input_tokens": 500}
    renderer.show(RequestStarted(1, 1))
    renderer.show(RequestUsage("claude-sonnet-4-5-20250929", usage))
    renderer.show(TurnCommitted("tool_use", usage))
    renderer.show(RequestStarted(1, 2))
    renderer.show(RequestUsage("claude-sonnet-4-5-20250929", usage))  # say it was interrupted: still billed
    renderer.show(renderer.ended(TurnEnded("interrupted", False, "interrupted")))
    out = sink.getvalue()
    assert out.count(" in · ") == 1  # not one line per request
    assert "2 requests · 2,400 in · 600 out · cache 16,000 read / 1,000 written (hit 0.82) · $0.0247" in out
    renderer.show(RequestStarted(1, 1))
    renderer.show(RequestUsage("qwen2.5-coder-7b", usage))  # a local model: no price, so no cost
    renderer.show(renderer.ended(TurnEnded("end_turn", True)))
    renderer.close()
    out = sink.getvalue()
    assert "  1,200 in · 300 out · cache 8,000 read / 500 written (hit 0.82)\n" in out.replace("\x1b[0m", "")
    assert "session: 3 requests · 3,600 in · 900 out · cache 24,000 read / 1,500 written (hit 0.82)\n" in (
        out.replace("\x1b[0m", ""))


def test_a_rollback_discards_the_partial_reply():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(TextDelta(0, "half a **sent**"))
    renderer.show(TurnRolledBack("connection broke", 1, 5, 2.0, elapsed=3.1, undone=("a.py",), discarded=2))
    assert "half a sent" not in region_text(renderer)
    assert "\x1b[2;9mhalf a \x1b[0m\x1b[1;2;9msent\x1b[0m\n" in sink.getvalue()  # kept, struck through, styled
    assert ("partial reply discarded: connection broke after 3.1 s · rolled back (1 edit undone, 2 reads "
            "discarded) · retry 2/5 in 2.0 s") in sink.getvalue()
    renderer.show(TurnEnded(None, False, "gave up"))
    assert "✗ gave up" in sink.getvalue()


@pytest.mark.process
def test_in_a_real_terminal_text_streams_and_a_status_line_shows(workspace):
    command = "echo working; sleep 1.5; echo finished"
    server = ScriptedServer([
        reply(Text("Streaming **into** a terminal.\n", chunk=4, delay=0.02),
              ToolUse("t1", "bash", {"command": command})),
        reply(Text("All done.")),
    ])
    env = program_env()
    with server:
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "-p", "go", "--isolation", "none"],
                              cwd=str(workspace), env=env | {"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"},
                              dimensions=(30, 100), encoding="utf-8", timeout=20)
        child.expect("Streaming")
        child.expect("into")
        child.expect(r"Running `echo working")  # the live status line, while the command runs
        child.expect("working")  # its last output line
        child.expect("✓ Ran `echo working")
        child.expect("All done")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0


@pytest.mark.process
def test_the_prompt_continues_lines_and_remembers_across_sessions(workspace):
    server = ScriptedServer([reply(Text("first answer")), reply(Text("second answer"))])
    env = program_env()

    def session() -> pexpect.spawn:
        return pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none"], cwd=str(workspace),
                             env=env | {"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"}, dimensions=(30, 100),
                             encoding="utf-8", timeout=20)

    with server:
        child = session()
        child.expect("› ")
        child.sendline("explain this \\")
        child.expect("… ")
        child.sendline("over two lines")
        child.expect("first answer")
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)
        child = session()  # a new process: the history comes from disk
        child.expect("› ")
        child.send("\x1b[A")  # Up: the last message typed in this workspace, all its lines
        child.sendline("")
        child.expect("second answer")
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)
    first = server.requests[0]["body"]["messages"][-1]["content"][-1]["text"]
    second = server.requests[1]["body"]["messages"][0]["content"][-1]["text"]
    assert first == "explain this \nover two lines"
    assert second == "explain this \nover two lines"  # one entry per message (readline kept one per line)


@pytest.mark.process
def test_slash_commands_are_not_sent_to_the_model(workspace):
    server = ScriptedServer([reply(Text("a real answer"))])
    env = program_env()
    with server:
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "--max-tokens", "1234"], cwd=str(workspace),
                              env=env | {"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"}, dimensions=(30, 120),
                              encoding="utf-8", timeout=20)
        child.expect("› ")
        child.sendline("/help")
        child.expect(r"/retry +send the last message again")
        child.expect("› ")
        child.sendline("/nonsense")
        child.expect("unknown command /nonsense")
        child.expect("› ")
        child.sendline("/etc/hosts is what file?")  # a path is a message, not a command
        child.expect("a real answer")
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)
    (request,) = server.requests
    assert request["body"]["max_tokens"] == 1234
    assert request["body"]["messages"][0]["content"][-1]["text"] == "/etc/hosts is what file?"


def test_waiting_calls_say_so_and_calls_that_never_ran_are_reported():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(ToolCallReady(0, "a", "edit_file", {"path": "a.py"}))
    renderer.show(ToolRunning("a", "edit_file", "Editing a.py"))
    renderer.show(ToolCallReady(1, "b", "edit_file", {"path": "a.py"}))  # behind a: same file
    region = region_text(renderer)
    assert "Editing a.py  " in region  # running, with its elapsed time
    assert "◦ Editing a.py · waiting for an earlier call to finish" in region
    renderer.show(finished("a", "edit_file", {"path": "a.py"}, ToolResult(
        "interrupted\n[exit status -15]", True, Facts("interrupted", -15)), 0.5))
    renderer.show(TurnEnded("interrupted", False, "interrupted; the conversation is saved"))
    out = sink.getvalue()
    assert "○ Editing a.py: not run (the turn was interrupted before it started)" in out


def test_outcomes_name_the_signal_and_never_cut_a_word():
    from midstream.tools.ui.render import outcome_line

    killed = finished("a", "bash", {"command": "sleep 9"}, ToolResult("[exit status -9]", True, Facts("failed", -9)),
                      1.0)
    assert outcome_line(killed) == "✗ Ran `sleep 9`: killed by SIGKILL"
    failed = finished("a", "bash", {"command": "x"}, ToolResult("out\n[exit status 2]", True, Facts("failed", 2,
                                                                                                   detail="out")), 1.0)
    assert outcome_line(failed) == "✗ Ran `x`: exit 2 (out)"
    refused = "Refused: NOTES.md is outside the workspace " + "and cannot be written there at all " * 6
    line = outcome_line(finished("a", "write_file", {"path": "NOTES.md"}, ToolResult(refused, True,
                                                                                      Facts("refused")), 0.0))
    assert line.startswith("✗ Writing NOTES.md: Refused: NOTES.md is outside") and line.endswith("…")
    assert line[:-1].split()[-1] in refused.split()  # ends on a whole word
    not_run = outcome_line(finished("a", "edit_file", {"path": "a.py"}, ToolResult(
        "Not run: the person interrupted the turn.", True, Facts("not_run")), 0.0))
    assert not_run == "○ Editing a.py: not run (the turn was interrupted before it started)"


def test_escape_sequences_from_the_model_or_a_tool_are_shown_not_obeyed():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(TextDelta(0, "clear \x1b[2J\x1b[5Aup\rback\nand \x1b]0;title\x07 partial \x1b[1A"))
    renderer.show(ToolRunning("b", "bash", "Running `cat evil`"))
    renderer.show(ToolProgress("b", "\x1b[H\x1b[2Jgotcha"))
    assert "^[[Hgotcha" in region_text(renderer).replace("^[[2J", "")
    renderer.show(finished("b", "bash", {"command": "cat evil"}, ToolResult(
        "\x1b[31mred\n[exit status 1]", True, Facts("failed", 1, detail="\x1b[31mred")), 0.1))
    renderer.show(TurnEnded("end_turn", True))
    out = sink.getvalue()
    assert "clear ^[[2J^[[5Aup^Mback and ^[]0;title^G partial ^[[1A" in out  # one paragraph, soft break joined
    for obeyed in ("\x1b[2J", "\x1b[5A", "\x1b]0", "\x1b[H", "\x1b[31mred"):  # (our own cursor-ups are 1-2 rows)
        assert obeyed not in out


def test_the_plain_renderer_reports_calls_that_never_ran():
    from midstream.tools.ui.render import PlainRenderer

    out, err = io.StringIO(), io.StringIO()
    renderer = PlainRenderer(out, err, stream_text=False)
    renderer.show(RequestStarted(1, 1))
    renderer.show(ToolCallReady(0, "a", "edit_file", {"path": "a.py"}))
    renderer.show(ToolCallReady(1, "b", "edit_file", {"path": "b.py"}))
    renderer.show(ToolRunning("a", "edit_file", "Editing a.py"))
    renderer.show(finished("a", "edit_file", {"path": "a.py"}, ToolResult("Edited a.py: replaced 1 occurrence.\n"),
                           0.1))
    renderer.show(TurnEnded("interrupted", False, "interrupted; the conversation is saved"))
    lines = err.getvalue().splitlines()
    assert lines == ["… Editing a.py", "✓ Edited a.py", "○ edit_file b.py: not run (the turn was interrupted "
                     "before it started)", "midstream: interrupted; the conversation is saved"]


def test_a_region_stopped_with_a_draw_pending_leaves_its_refresh_thread_asleep():
    """At the prompt nothing is drawn: the refresh thread must sleep, not spin on a draw that is gone."""
    import os
    import threading
    import time

    from midstream.tools.ui.printer import LivePrinter

    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    printer = LivePrinter(console, lambda: ["working"], threading.RLock(), min_interval=0.05)
    printer.start()
    printer.touch()  # a draw falls due in 50 ms...
    printer.touch()
    printer.stop()  # ...but the turn ends first
    thread = next(t for t in threading.enumerate() if t.name == "live-region" and t.is_alive())

    def cpu_ticks() -> int:
        fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    time.sleep(0.1)
    before = cpu_ticks()
    time.sleep(1.0)
    used = (cpu_ticks() - before) / os.sysconf("SC_CLK_TCK")
    printer.close()
    assert used < 0.2, f"the stopped region's thread used {used:.2f} s of CPU in 1 s"


def test_calls_of_one_kind_in_one_reply_are_one_line_however_fast_each_finishes():
    # Each read ends before the next one's block has even started: still one line, since the reply was
    # streaming reads all along; held outcomes show in the region meanwhile, and text after them waits.
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    for n in range(3):
        args = {"path": f"f{n}.py"}
        renderer.show(ToolCallStarted(n, f"r{n}", "read_file"))
        renderer.show(ToolCallReady(n, f"r{n}", "read_file", args))
        renderer.show(ToolRunning(f"r{n}", "read_file", f"Reading f{n}.py"))
        renderer.show(finished(f"r{n}", "read_file", args, ToolResult("x\n", facts=Facts("ran", lines=1)), 0.0))
    assert "Read 3 files" in region_text(renderer) and "Read" not in sink.getvalue()  # held, shown live
    renderer.show(TextDelta(3, "All three read.\n"))
    renderer.show(BlockStopped(3, "text"))
    out = sink.getvalue()
    assert out.count("Read 3 files (3 lines): f0.py, f1.py, f2.py") == 1 and "Read f0.py" not in out
    assert out.index("Read 3 files") < out.index("All three read.")
    renderer.show(TurnEnded("end_turn", True))
