"""What the terminal folds is kept and opens whole: a command's output, thinking and the whole session,
in a real pty read through pyte (Ctrl-O, ``/show``, ``/transcript``; ``cat`` and a real ``less`` as the
pager); and the store of folds stays bounded."""

from __future__ import annotations

import shutil

import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, Thinking, ToolUse, reply
from midstream.tools.ui.folds import Folds, opened, preview
from midstream.tools.ui.pager import page, pager_command

from tests.helpers import Terminal

THOUGHTS = "\n".join(f"thought number {i}: the parser drops case {i}" for i in range(1, 41))


def counting() -> list[dict]:
    return [reply(Thinking(THOUGHTS), Text("Let me count."), ToolUse("c1", "bash", {"command": "seq 500"}),
                  ToolUse("r1", "read_file", {"path": "app.py"})),
            reply(Text("Counted to 500.")),
            reply(Text("You are welcome."))]


def numbers_on(rows: list[str]) -> set[int]:
    bare = [row.strip().removeprefix("⎿").strip() for row in rows]  # a call's result starts with ⎿ in the transcript
    return {int(row) for row in bare if row.isdigit()}


def session(workspace, columns: int, **env: str) -> tuple[ScriptedServer, Terminal]:
    (workspace / "app.py").write_text("def handler():\n    return 'the app body'\n")
    server = ScriptedServer(counting())
    term = Terminal(server, workspace, columns, "count to 500", **env)
    return server, term


def after_the_turn(term: Terminal) -> list[str]:
    term.expect("Counted to 500.")
    term.prompt()
    return term.lines()


def the_prompt_still_works(term: Terminal, server: ScriptedServer) -> None:
    term.prompt()
    term.child.send("thanks\r")
    term.expect("You are welcome.")
    term.leave()
    assert server.requests[-1]["body"]["messages"][-1]["content"][-1]["text"].endswith("thanks")


@pytest.mark.process
@pytest.mark.parametrize("columns", [80, 120])
def test_a_500_line_output_is_folded_and_ctrl_o_shows_all_of_it(workspace, columns):
    server, term = session(workspace, columns, PAGER="cat")
    with server:
        rows = after_the_turn(term)
        ran = next(i for i, row in enumerate(rows) if row.startswith("✓ Ran `seq 500`"))
        shown = rows[ran + 1:ran + 7]
        assert [row.strip() for row in shown] == ["1", "2", "3", "… 495 more lines · ctrl-o to expand", "499", "500"]
        assert numbers_on(rows) == {1, 2, 3, 499, 500}
        assert all(len(row) <= columns for row in rows), rows
        term.child.send("\x0f")  # Ctrl-O on the empty prompt
        term.expect("all 500 lines")
        the_prompt_still_works(term, server)
    rows = term.lines()
    assert numbers_on(rows) == set(range(1, 501))
    opened_at = next(i for i, row in enumerate(rows) if row.startswith("Ran `seq 500` · all 500 lines"))
    assert [row.strip() for row in rows[opened_at + 1:opened_at + 501]] == [str(n) for n in range(1, 501)]
    assert not any("/show" in row for row in rows[opened_at - 2:opened_at]), rows  # the key, not a typed line


@pytest.mark.process
@pytest.mark.skipif(shutil.which("less") is None, reason="less is not installed here")
def test_ctrl_o_through_a_real_less_and_q_gives_the_prompt_back(workspace):
    server, term = session(workspace, 100, PAGER="")
    with server:
        after_the_turn(term)
        term.child.send("\x0f")
        term.child.expect_exact(b"\x1b[?1049h")  # less on the alternate screen: what was there comes back
        term.shows("Ran `seq 500` · all 500 lines")
        term.child.send(">")  # to the end, as a reader does
        term.shows("500")
        term.child.send("q")
        term.child.expect_exact(b"\x1b[?1049l")
        the_prompt_still_works(term, server)
    rows = term.lines()
    assert any(row.startswith("✓ Ran `seq 500`") for row in rows) and "› count to 500" in rows


@pytest.mark.process
@pytest.mark.parametrize("columns", [80, 120])
def test_forty_lines_of_thinking_show_whole_with_slash_show(workspace, columns):
    server, term = session(workspace, columns, PAGER="cat")
    with server:
        rows = after_the_turn(term)
        thought = next(row for row in rows if row.startswith("✻ thought for"))
        assert thought.endswith("· ctrl-o to expand") and len(thought) <= columns, rows
        assert not any("thought number 2:" in row for row in rows)
        term.child.send("/show 3\r")  # the output, the read, then the thinking: the third last
        term.expect("all 40 lines")
        term.expect("thought number 40: the parser drops case 40")
        the_prompt_still_works(term, server)
    rows = term.lines()
    assert all(f"thought number {i}: the parser drops case {i}" in rows for i in range(1, 41)), rows


@pytest.mark.process
@pytest.mark.parametrize("columns", [80, 120])
def test_the_transcript_has_the_task_every_output_whole_and_the_thinking(workspace, columns):
    server, term = session(workspace, columns, PAGER="cat")
    with server:
        after_the_turn(term)
        term.child.send("/transcript\r")
        term.expect("Counted to 500.")
        the_prompt_still_works(term, server)
    rows = term.lines()
    start = next(i for i, row in enumerate(rows) if row.startswith("Transcript · session "))
    view = rows[start:]
    assert "› count to 500" in view
    assert all(f"  thought number {i}: the parser drops case {i}" in view for i in range(1, 41)), view
    assert numbers_on(view) == set(range(1, 501))
    assert any("return 'the app body'" in row for row in view)
    assert view.index("● bash seq 500") < view.index("● read_file app.py") < view.index("Counted to 500.")


@pytest.mark.process
def test_show_with_nothing_folded_and_with_a_bad_number_is_one_line(workspace):
    server = ScriptedServer([reply(Text("Short answer."))])
    with server:
        term = Terminal(server, workspace, 100, "hi", PAGER="cat")
        term.expect("Short answer.")
        term.prompt()
        term.child.send("/show\r")
        term.expect("no fold yet")
        term.prompt()
        term.child.send("/show two\r")
        term.expect("/show takes a number")
        term.prompt()
        term.child.send("/diff 3\r")
        term.expect("no diff yet")
        term.leave()
    assert not any("Traceback" in row for row in term.lines())


# -- the store, the preview and the pager, without a terminal ---------------------------------------


def test_the_store_keeps_the_last_folds_and_says_when_an_old_one_is_gone():
    folds = Folds(size=3, budget=10_000)
    for n in range(1, 6):
        folds.add("output", f"Ran `job {n}`", f"output of job {n}\n", call_id=f"c{n}")
    assert len(folds) == 3 and folds.made == 5
    assert [folds.get(back).title for back in (1, 2, 3)] == ["Ran `job 5`", "Ran `job 4`", "Ran `job 3`"]
    assert folds.get(4) is None and "no longer kept" in folds.missing(4)
    assert "only 5 folds so far" in folds.missing(9)
    assert folds.of_call("c5").title == "Ran `job 5`" and folds.of_call("c1") is None
    assert folds.get(1, "diff") is None and folds.missing(1, "diff").startswith("no diff yet")


def test_the_store_stays_within_its_budget_and_cuts_one_fold_too_large():
    folds = Folds(size=50, budget=1000)
    for n in range(10):
        folds.add("output", f"t{n}", "x" * 300)
    assert len(folds) == 3 and sum(f.size for f in (folds.get(1), folds.get(2), folds.get(3))) <= 1000
    huge = folds.add("thinking", "big", "".join(f"line {i}\n" for i in range(10_000)))
    assert len(folds) == 1 and huge.cut > 0 and huge.size <= 1000 + 60
    assert huge.text.startswith("line 0\n") and huge.text.rstrip().endswith("line 9999")
    assert "not kept" in opened(huge)[0].plain


def test_a_short_output_is_shown_whole_and_a_long_one_around_its_fold():
    rows, folded = preview("one\ntwo\nthree\n")
    assert not folded and [r.plain.strip() for r in rows] == ["one", "two", "three"]
    rows, folded = preview("".join(f"{i}\n" for i in range(1, 11)))
    assert folded and [r.plain.strip() for r in rows] == ["1", "2", "3", "… 5 more lines · ctrl-o to expand", "9", "10"]
    rows, _ = preview("\x1b]52;c;cGF3bmVk\x07 and \x1b[2J\n")
    assert "\x1b" not in rows[0].plain and "^[" in rows[0].plain  # escapes shown, never obeyed


def test_the_pager_is_pager_else_less_and_a_bad_one_is_one_line():
    argv, why = pager_command({"PAGER": "cat"})
    assert argv is not None and argv[0].endswith("/cat") and not why
    if shutil.which("less"):
        argv, why = pager_command({})
        assert argv is not None and argv[0].endswith("/less") and argv[1:] == ["-R"]
    assert pager_command({"PAGER": "no-such-pager-here --flag"}) == (
        None, "the pager 'no-such-pager-here' (from $PAGER) is not installed; printed here instead")
    assert pager_command({"PAGER": '"unclosed'})[0] is None


def test_without_a_terminal_a_fold_is_printed_whole_line_by_line():
    said: list[tuple[str, str]] = []
    folds = Folds()
    fold = folds.add("output", "Ran `seq 3`", "1\n2\n3\n")
    page(opened(fold), terminal=False, say=lambda text, style: said.append((text, style)))
    assert [text for text, _ in said] == ["Ran `seq 3` · all 3 lines", "1", "2", "3"]
