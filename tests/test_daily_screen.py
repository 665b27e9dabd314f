"""What a person sees while a reply streams, in a real pty read through pyte: the status line, a resize that
leaves every line once in the scrollback, retries on one updating line, Markdown tables and diffs."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pexpect
import pyte
import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env

pytestmark = pytest.mark.process

ROWS = 30


class Terminal:
    """The program in a pty; its bytes replayed into pyte, resized where the pty was."""

    def __init__(self, server: ScriptedServer, workspace: Path, columns: int, *args: str) -> None:
        self.columns = columns
        self.bytes = io.BytesIO()
        self.resizes: list[tuple[int, int]] = []  # (byte offset, new columns)
        env = program_env(PAGER="cat")  # a whole diff printed into the scrollback (tests/test_full_view.py: less)
        mode = [] if "--mode" in args else ["--mode", "auto"]
        self.child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", *mode, *args],
                                   cwd=str(workspace), env=env | {"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"},
                                   dimensions=(ROWS, columns), timeout=20)
        self.child.logfile_read = self.bytes

    def expect(self, pattern: str) -> None:
        self.child.expect(pattern.encode())

    def resize(self, columns: int) -> None:
        self.child.read_nonblocking(100_000, timeout=0.2)  # what was written at the old size, read at it
        self.resizes.append((len(self.bytes.getvalue()), columns))
        self.child.setwinsize(ROWS, columns)

    def finish(self) -> None:
        self.child.expect(pexpect.EOF)
        self.child.close()

    def lines(self) -> list[str]:
        screen = pyte.HistoryScreen(self.columns, ROWS, history=100_000)
        stream = pyte.ByteStream(screen)
        data, position = self.bytes.getvalue(), 0
        for offset, columns in self.resizes:
            stream.feed(data[position:offset])
            screen.resize(ROWS, columns)
            position = offset
        stream.feed(data[position:])
        rows = ["".join(line[x].data for x in range(max(line.keys(), default=-1) + 1)).rstrip()
                for line in screen.history.top]
        rows += [line.rstrip() for line in screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows


@pytest.mark.parametrize("columns", [80, 120])
def test_a_resize_while_a_reply_streams_leaves_every_line_once(workspace, columns):
    # Paragraphs of one line each (soft breaks would join them into rows wrapped at the width of the
    # moment, which a screen made narrower afterwards crops: test_lines.py covers joining across a resize).
    text = "".join(f"Line {i} of the reply, long enough to be a real sentence here.\n\n" for i in range(40))
    server = ScriptedServer([reply(Text(text, chunk=16, delay=0.01), ToolUse("t1", "bash", {"command": "sleep 1"})),
                             reply(Text("All streamed."))])
    with server:
        term = Terminal(server, workspace, columns, "-p", "stream it")
        term.expect("Line 12 of")
        term.resize(100 if columns == 80 else 90)
        term.expect("Line 25 of")
        term.resize(columns)
        term.finish()
    rows = term.lines()
    for i in range(40):
        found = [row for row in rows if row.startswith(f"Line {i} of the reply")]
        assert len(found) == 1, (i, rows)
    assert not any("Thinking" in row or "esc to interrupt" in row or "Running" in row for row in rows), rows
    assert any(row.startswith("All streamed.") for row in rows)


@pytest.mark.parametrize("columns", [80, 120])
def test_a_status_line_shows_while_text_streams(workspace, columns):
    text = "".join(f"word{i} " for i in range(300))
    server = ScriptedServer([reply(Text(text, chunk=8, delay=0.02)), reply(Text("done"))])
    with server:
        term = Terminal(server, workspace, columns)
        term.expect("› ")
        term.child.sendline("talk")
        term.expect("word40 ")
        time.sleep(0.3)
        term.child.read_nonblocking(100_000, timeout=0.2)
        screen = pyte.Screen(columns, ROWS)
        pyte.ByteStream(screen).feed(term.bytes.getvalue())
        status = [row for row in screen.display if "esc to interrupt" in row]
        assert len(status) == 1 and "tokens" in status[0] and " s" in status[0], screen.display
        term.child.send("\x1b")
        term.expect("interrupted")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    assert not any("esc to interrupt" in row for row in term.lines())  # the status line is never printed


def test_retries_update_one_line(workspace):
    overloaded = {"status": 529, "error": {"type": "overloaded_error", "message": "busy"}}
    server = ScriptedServer([overloaded, overloaded, overloaded, reply(Text("Finally here."))])
    with server:
        term = Terminal(server, workspace, 100, "-p", "go", "--max-attempts", "5")
        term.finish()
    rows = term.lines()
    assert any(row.startswith("Finally here.") for row in rows), rows
    retry_rows = [row for row in rows if "retry" in row or "529" in row]
    assert len(retry_rows) <= 1, rows


@pytest.mark.parametrize("columns", [80, 120])
def test_a_markdown_table_is_drawn_with_box_characters_and_fences_are_hidden(workspace, columns):
    note = "a note long enough that at eighty columns it has to wrap inside its own cell, twice over"
    text = ("Sizes:\n| Name | Size | Note |\n|------|-----:|:-----|\n"
            f"| alpha | 12 | {note} |\n| **beta** | 3 | short |\n\nCode:\n```python\ndef f():\n    return 1\n```\nend\n"
            "- a bullet whose text is long enough to wrap at eighty columns and at one hundred and twenty "
            "columns as well, so its continuation shows\n")
    server = ScriptedServer([reply(Text(text, chunk=7, delay=0.002))])
    with server:
        term = Terminal(server, workspace, columns, "-p", "sizes")
        term.finish()
    rows = term.lines()
    assert not any("|---" in row or row.startswith("|") or "```" in row for row in rows), rows
    top = next(i for i, row in enumerate(rows) if row.startswith("╭"))
    assert "Name" in rows[top + 1] and "│" in rows[top + 1] and rows[top + 2].startswith("├")
    body = rows[top + 3:next(i for i, row in enumerate(rows) if row.startswith("╰"))]
    assert body[0].startswith("│ alpha") and "12 │" in body[0]
    cells = " ".join(row.split("│")[3].strip() for row in body if row.count("│") >= 4)
    assert note in cells and (len(body) >= 3 or columns > 100)  # at 80 the note wraps within its cell
    assert all(len(row) <= columns for row in rows)
    assert any(row.strip() == "def f():" for row in rows) and any(row.strip() == "return 1" for row in rows)
    bullet = next(i for i, row in enumerate(rows) if row.startswith("• a bullet"))
    assert rows[bullet + 1].startswith("  ") and rows[bullet + 1].strip()  # the continuation keeps the indent


@pytest.mark.parametrize("columns", [80, 120])
def test_a_paragraph_with_soft_breaks_reads_as_one_wrapped_to_the_width(workspace, columns):
    lines = ["The model wrapped this paragraph", "at forty columns, as models often do,", "and a person",
             "should read it as one paragraph filling the width of the terminal it is shown in."]
    text = "\n".join(lines) + "  \nafter a hard break\n\n- an item\nA last paragraph.\n"
    server = ScriptedServer([reply(Text(text, chunk=5, delay=0.002))])
    with server:
        term = Terminal(server, workspace, columns, "-p", "write")
        term.finish()
    rows = term.lines()
    start = next(i for i, row in enumerate(rows) if row.startswith("The model wrapped"))
    end = next(i for i, row in enumerate(rows) if row.startswith("after a hard break"))
    paragraph = rows[start:end]
    assert " ".join(row.strip() for row in paragraph) == " ".join(lines)  # joined, every word once, in order
    assert len(paragraph) == (3 if columns == 80 else 2) and all(len(row) <= columns for row in paragraph)
    assert all(len(row) > columns - 15 for row in paragraph[:-1])  # filled to the width, not broken where typed
    assert rows[end + 1:end + 4] == ["", "• an item", "A last paragraph."]


@pytest.mark.parametrize("columns", [80, 120])
def test_a_40_line_edit_and_an_overwrite_show_both_sides_and_diff_shows_all(workspace, columns):
    old = "".join(f"value_{i} = {i}\n" for i in range(40))
    new = "".join(f"value_{i} = {i * 2}\n" for i in range(40))
    (workspace / "table.py").write_text(old)
    (workspace / "big.py").write_text("".join(f"line_{i} = 'old'\n" for i in range(30)))
    server = ScriptedServer([
        reply(ToolUse("e1", "edit_file", {"path": "table.py", "old_string": old, "new_string": new})),
        reply(ToolUse("w1", "write_file", {"path": "big.py", "content": "".join(f"line_{i} = 'new'\n"
                                                                                for i in range(30))})),
        reply(Text("Both changed.")),
    ])
    with server:
        term = Terminal(server, workspace, columns)
        term.expect("› ")
        term.child.sendline("change them")
        term.expect("Both changed.")
        term.expect("› ")
        term.child.send("/diff 2\r")  # the edit's, whole
        term.expect("value_39 = 78")
        term.expect("› ")
        term.child.send("\x0f")  # Ctrl-O on an empty line: the last folded diff (the overwrite's), whole
        term.expect("line_29 = 'new'")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    edited = rows.index("✓ Edited table.py")
    fold_end = next(i for i in range(edited, len(rows)) if "more rows (+" in rows[i])
    folded = rows[edited:fold_end]
    assert any(row.lstrip().startswith("2 - value_1 = 1") for row in folded), folded
    assert any(row.lstrip().startswith("2 + value_1 = 2") for row in folded), folded  # added lines before the fold
    wrote = next(i for i, row in enumerate(rows) if row.startswith("✓ Wrote big.py") or row.startswith("✓ Overwrote"))
    after = rows[wrote + 1:wrote + 20]
    assert any("- line_0 = 'old'" in row for row in after) and any("+ line_0 = 'new'" in row for row in after), after
    whole = rows[next(i for i, row in enumerate(rows) if row == "Edited table.py · the whole diff"):]
    assert any(row.lstrip().startswith("40 + value_39 = 78") for row in whole), whole
    assert any("30 + line_29 = 'new'" in row for row in rows[-40:]), rows[-40:]


@pytest.mark.parametrize("columns", [80, 120])
def test_parallel_reads_are_one_line_with_the_count(workspace, columns):
    for i in range(12):
        (workspace / f"f{i}.py").write_text(f"x = {i}\ny = 2\n")
    reads = [ToolUse(f"r{i}", "read_file", {"path": f"f{i}.py"}) for i in range(12)]
    missing = ToolUse("m", "read_file", {"path": "missing.py"})
    server = ScriptedServer([reply(*reads, missing), reply(Text("Read all."))])
    with server:
        term = Terminal(server, workspace, columns, "-p", "read them")
        term.finish()
    rows = term.lines()
    grouped = [row for row in rows if row.startswith("✓ Read 12 files (24 lines): ")]
    assert len(grouped) == 1 and not any(row.startswith("✓ Read f") for row in rows), rows
    assert any(row.startswith("✗ Reading missing.py") for row in rows), rows  # a failure keeps its own line


@pytest.mark.parametrize("columns", [80, 120])
def test_the_todo_plan_is_a_checklist_printed_once_and_costs_one_short_result(workspace, columns):
    first = ["[>] read the code", "[ ] write the test", "[ ] fix the bug"]
    second = ["[x] read the code", "[x] write the test", "[>] fix the bug"]
    server = ScriptedServer([
        reply(Text("Planning.\n"), ToolUse("p1", "todo", {"plan": first})),
        reply(Text("Tested.\n", chunk=2, delay=0.05), ToolUse("p2", "todo", {"plan": second})),
        reply(Text("All three steps are under way.")),
    ])
    with server:
        term = Terminal(server, workspace, columns, "-p", "do it in steps")
        term.expect("Plan · 0 of 3 done")  # drawn in the live region while the message is worked on
        term.finish()
    rows = term.lines()
    assert [row for row in rows if row.startswith("Plan · ")] == ["Plan · 2 of 3 done"], rows  # printed once
    at = rows.index("Plan · 2 of 3 done")
    assert rows[at + 1:at + 4] == ["  ☑ read the code", "  ☑ write the test", "  ◐ fix the bug"], rows
    assert not any("Updated the plan" in row for row in rows), rows
    results = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert results[0]["content"] == "Plan updated: 0 of 3 done; doing: read the code."  # no copy of the list
