"""What a person sees: the real program in a pseudo-terminal, its bytes fed to a terminal emulator
(pyte), and the screen plus scrollback read back, at 80 and 120 columns."""

from __future__ import annotations

import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import Terminal, in_order

pytestmark = pytest.mark.process

@pytest.mark.parametrize("columns", [80, 120])
def test_ctrl_c_mid_line_keeps_the_line_and_the_next_reply_starts_on_its_own(workspace, columns):
    stalled = reply(Text("You are a", chunk=3, delay=0.02)) | {"stall_after": 6, "stall": 30.0}
    server = ScriptedServer([stalled, reply(Text("You are a thing.\nSecond line."))])
    with server:
        term = Terminal(server, workspace, columns)
        term.expect("› ")
        term.child.sendline("who am I")
        term.expect(r"You are a(?!…)")
        term.child.sendintr()
        term.expect("interrupted")
        term.expect("› ")
        term.child.sendline("go on")
        term.expect("Second line")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    assert "You are a" in rows, rows  # the partial line stayed, as it was shown, on a row of its own
    assert in_order(rows, ["You are a", "✗ interrupted", "› go on", "You are a thing. Second line."]) == [], rows
    assert not any("You are aYou" in row or "aSecond" in row for row in rows), rows


def a_busy_reply(run: int) -> list[dict]:
    text = (f"Run {run}: first line of prose.\nA **second** line, run {run}.\nThen some code:\n"
            f"```python\ndef run_{run}():\n    return {run}\n```\n"
            f"After the code, run {run}.\nLast line of run {run}.\n")
    return [
        reply(Text(text, chunk=5, delay=0.0005),
              ToolUse(f"r{run}", "read_file", {"path": "notes.txt"}),
              ToolUse(f"b{run}", "bash", {"command": f"echo done-{run}"})),
        reply(Text(f"Finished run {run}.")),
    ]


def wanted_lines(run: int, tool_line: str) -> list[str]:
    # The fence lines are hidden behind the highlighted block (they were printed as typed before); the
    # prose lines around it are paragraphs, their single newlines soft breaks (joined, as Markdown means).
    return [f"› run {run}", f"Run {run}: first line of prose. A second line, run {run}. Then some code:",
            f"  def run_{run}():", f"      return {run}", f"After the code, run {run}. Last line of run {run}.",
            tool_line, f"Finished run {run}."]


@pytest.mark.parametrize("columns", [80, 120])
def test_text_a_code_block_more_text_and_tool_outcomes_all_stay_in_order(workspace, columns):
    (workspace / "notes.txt").write_text("one\ntwo\n")
    runs = 20
    server = ScriptedServer([r for run in range(runs) for r in a_busy_reply(run)])
    with server:
        term = Terminal(server, workspace, columns)
        for run in range(runs):
            term.expect("› ")
            term.child.sendline(f"run {run}")
            term.expect(f"Finished run {run}")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    # The two calls run side by side: either outcome may come first, each after the text, before the end.
    tools = ["✓ Read notes.txt (2 lines)", "✓ Ran `echo done-{run}`"]
    failed = {(run, tool): missing for run in range(runs) for tool in tools
              if (missing := in_order(rows, wanted_lines(run, tool.format(run=run))))}
    assert failed == {}, "\n".join(rows)


@pytest.mark.parametrize("columns", [80, 120])
def test_keys_typed_during_a_reply_are_not_echoed_into_it_and_are_sent_after_the_turn(workspace, columns):
    story = "".join(f"w{i} " for i in range(60)) + "end of reply.\n\nSecond line of it.\n"  # two paragraphs
    server = ScriptedServer([reply(Text(story, chunk=4, delay=0.02)), reply(Text("A story, as asked.")),
                             reply(Text("Finished that too."))])
    with server:
        term = Terminal(server, workspace, columns)
        term.expect("› ")
        term.child.sendline("You want")
        term.expect("w5 ")
        term.child.send("Tell me a story\r")  # typed while the reply streams, Enter included
        term.child.send("and then")  # typed, not sent: waits on the next prompt
        term.expect("Second line of it")
        term.expect("A story, as asked")
        term.expect("› and then")
        term.child.sendline(" stop")
        term.expect("Finished that too")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    reply_rows = rows[rows.index("› You want") + 1:next(i for i, r in enumerate(rows) if r.startswith("Second line"))]
    assert not any("Tell" in row or "and then" in row for row in reply_rows), rows
    assert in_order(rows, ["w0 w1 w2", "Second line of it.",
                           "› Tell me a story  (queued)", "A story, as asked.", "› and then stop",
                           "Finished that too."]) == [], rows
    sent = [r["body"]["messages"][-1]["content"][-1]["text"] for r in server.requests]
    assert sent == ["You want", "Tell me a story", "and then stop"]


@pytest.mark.parametrize("columns", [80, 120])
def test_ask_mode_shows_the_diff_before_the_question_and_a_long_diff_is_counted(workspace, columns):
    (workspace / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    old = "".join(f"value_{i} = {i}\n" for i in range(40))
    new = "".join(f"value_{i} = {i * 2}\n" for i in range(40))
    (workspace / "table.py").write_text(old)
    server = ScriptedServer([
        reply(ToolUse("e1", "edit_file", {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"})),
        reply(ToolUse("e2", "edit_file", {"path": "table.py", "old_string": old, "new_string": new})),
        reply(ToolUse("w1", "write_file", {"path": "fresh.py", "content": "print('new')\nprint('file')\n"})),
        reply(Text("All three done.")),
    ])
    with server:
        term = Terminal(server, workspace, columns, "--mode", "ask")
        term.expect("› ")
        term.child.sendline("fix it")
        for question in ("Editing calc.py?", "Editing table.py?", "Writing fresh.py?"):
            term.expect(question.replace("?", r"\?"))
            term.expect(r"\[a\]lways this session: ")
            term.child.sendline("y")
        term.expect("All three done")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    # Numbered rows of both sides; a long diff folded so that added lines show beside the removed ones
    # (it showed its first 12 rows, all removals, before).
    assert in_order(rows, ["? Editing calc.py would change:", "    2 -     return a - b", "    2 +     return a + b",
                           "Editing calc.py? [y]es", "✓ Edited calc.py", "    2 -     return a - b"]) == [], rows
    assert in_order(rows, ["? Editing table.py would change:", "     2 - value_1 = 1", "     2 + value_1 = 2",
                           "    … 63 more rows (+39 -39 in all) · ctrl-o to expand", "Editing table.py? [y]es",
                           "✓ Edited table.py",
                           "     2 - value_1 = 1", "     2 + value_1 = 2",
                           "    … 63 more rows (+39 -39 in all) · ctrl-o to expand"]) == [], rows
    assert in_order(rows, ["? Writing fresh.py would change:", "      new file, 2 lines (27 bytes)",
                           "    +print('new')", "    +print('file')", "Writing fresh.py? [y]es"]) == [], rows
    assert (workspace / "table.py").read_text() == new


@pytest.mark.parametrize("columns", [80, 120])
def test_a_dropped_reply_stays_on_screen_and_the_retry_starts_on_its_own_line(workspace, columns):
    dropped = reply(Text("First line.\nHalf a line", chunk=4, delay=0.01)) | {"drop_after": 8}
    server = ScriptedServer([dropped, reply(Text("First line.\nWhole reply."))])
    with server:
        term = Terminal(server, workspace, columns, "-p", "go", "--max-attempts", "2")
        term.finish()
    rows = term.lines()
    # One paragraph (a soft break): the discarded one is struck through whole, the retry starts afresh.
    wanted = ["First line. Half a l", "↺ partial reply discarded: ", "First line. Whole reply."]
    assert in_order(rows, wanted) == [], rows
    assert not any("lineWhole" in row or "line First" in row for row in rows), rows


@pytest.mark.parametrize("columns", [80, 120])
def test_a_waiting_call_says_so_and_after_ctrl_c_says_it_did_not_run(workspace, columns):
    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": "echo started; sleep 30"}),
              ToolUse("t2", "bash", {"command": "touch never"})),
        reply(Text("Stopped, as you asked.")),
    ])
    with server:
        term = Terminal(server, workspace, columns)
        term.expect("› ")
        term.child.sendline("go")
        term.expect("waiting for an earlier call")
        term.expect("started")
        term.child.sendintr()
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    assert in_order(rows, ["› go", "✗ Ran `echo started; sleep 30`: killed by SIGINT",
                           "○ Running `touch never`: not run", "✗ interrupted"]) == [], rows
    assert not (workspace / "never").exists()
