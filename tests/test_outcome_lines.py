"""Status and outcome lines for every tool and every ending, as a person and a script see them: the
terminal renderer in a real pty read through pyte, the plain renderer of -p, and json output.

Endings: ran, failed (exit status), timed out, killed by a signal, refused (policy, unknown tool,
invalid input), stopped in the countdown, not run; interrupted is in test_screen.py.
"""

from __future__ import annotations

import json

import pexpect
import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import Terminal, in_order, midstream, wait_until

pytestmark = pytest.mark.process


def endings() -> ScriptedServer:
    return ScriptedServer([
        reply(ToolUse("t1", "read_file", {"path": "a.txt"}),
              ToolUse("t2", "bash", {"command": "echo half; exit 3"}),
              ToolUse("t3", "bash", {"command": "sleep 30", "timeout": 1}),
              ToolUse("t4", "bash", {"command": "kill -9 $$"}),
              ToolUse("t5", "no_such_tool", {"x": 1}),
              ToolUse("t6", "read_file", {"path": 7}),
              ToolUse("t7", "write_file", {"path": "../outside.txt", "content": "x"}),
              ToolUse("t8", "glob", {"pattern": "*.txt"})),
        reply(Text("All done.")),
    ])


EXPECTED = [
    "✓ Read a.txt (1 line)",
    "✗ Ran `echo half; exit 3`: exit 3 (half)",
    "✗ Ran `sleep 30`: timed out",
    "✗ Ran `kill -9 $$`: killed by SIGKILL",
    "✗ no_such_tool: Unknown tool 'no_such_tool'.",  # its first sentence, whole (issue 25)
    "✗ Reading 7: Invalid input for read_file:",
    "✗ Writing ../outside.txt: ",
    "✓ Found *.txt (1 file)",
]


def test_the_terminal_shows_one_right_outcome_line_for_every_ending(workspace):
    (workspace / "a.txt").write_text("one\n")
    server = endings()
    with server:
        term = Terminal(server, workspace, 120)
        term.expect("› ")
        term.child.sendline("go")
        term.expect("All done.")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    outcomes = [row for row in rows if row.startswith(("✓", "✗", "○"))]
    assert sorted(in_order(sorted(outcomes), sorted(EXPECTED))) == [], outcomes
    assert len(outcomes) == len(EXPECTED), outcomes  # one line per call, none twice
    assert not (workspace.parent / "outside.txt").exists()


def test_the_plain_renderer_and_json_output_say_the_same_endings(workspace):
    (workspace / "a.txt").write_text("one\n")
    with endings() as server:
        plain = midstream(["--isolation", "none", "--mode", "auto", "-p", "go"], workspace,
                          {"ANTHROPIC_BASE_URL": server.url})
    assert plain.returncode == 0, plain.stderr
    lines = plain.stderr.splitlines()
    assert sorted(in_order(sorted(lines), sorted(EXPECTED))) == [], lines
    with endings() as server:
        summary = midstream(["--isolation", "none", "--mode", "auto", "-p", "go", "--output-format", "json"],
                            workspace, {"ANTHROPIC_BASE_URL": server.url})
    result = json.loads(summary.stdout)
    calls = {c["id"]: c for c in result["tool_calls"]}
    assert {i: (c["ended"], c["exit_status"]) for i, c in calls.items()} == {
        "t1": ("ran", None), "t2": ("failed", 3), "t3": ("timed_out", -15), "t4": ("failed", -9),
        "t5": ("refused", None), "t6": ("refused", None), "t7": ("refused", None), "t8": ("ran", None)}


def test_a_countdown_stopped_and_a_call_never_run_are_said_in_the_terminal(workspace):
    (workspace / "build").mkdir()
    (workspace / "build" / "keep.o").write_text("precious")
    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": "rm -rf build"}), ToolUse("t2", "bash", {"command": "touch never"})),
        reply(Text("Stopped.")),
    ])
    with server:
        term = Terminal(server, workspace, 100, "--grace", "30")
        term.expect("› ")
        term.child.sendline("clean")
        term.expect("Ctrl-C")
        term.child.sendintr()
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    assert in_order(rows, ["› clean", "✗ Ran `rm -rf build`: stopped by the person in its grace window, nothing ran",
                           "○ Running `touch never`: not run (the turn was interrupted before it started)",
                           "✗ interrupted"]) == [], rows
    assert (workspace / "build" / "keep.o").exists() and not (workspace / "never").exists()


def test_a_long_command_streaming_in_keeps_its_status_to_one_row(workspace):
    body = "".join(f"line-{i:02d} of the notes that the model is writing\n" for i in range(40))
    command = f"cat <<'EOF' > notes.txt\n{body}EOF"
    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": command}, chunk=40, delay=0.05)),
        reply(Text("Written.")),
    ])
    with server:
        term = Terminal(server, workspace, 100)
        term.expect("› ")
        term.child.sendline("write notes")
        # The input has streamed well past the first rows of the heredoc; then half a second of screen.
        assert wait_until(lambda: server.log.count("sent:content_block_delta") >= 30, 10)
        term.child.expect(pexpect.TIMEOUT, timeout=0.5)
        streaming = term.lines()
        term.expect("Written.")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    status = [row for row in streaming if "Running `cat <<'EOF' > notes.txt" in row]
    assert len(status) == 1, streaming
    assert not any(row.startswith("line-") for row in streaming), streaming  # the heredoc is not on screen
    assert (workspace / "notes.txt").read_text() == body
