"""Attacks on soft-broken paragraphs (tools/ui/lines.py Blocks): every word once, in order, whatever ends them."""

from __future__ import annotations

import io
import re

import pyte
import pytest
from midstream.tools.events import (
    BlockStopped,
    RequestStarted,
    TextDelta,
    TurnEnded,
    TurnRolledBack,
)
from midstream.tools.ui.lines import Blocks
from midstream.tools.ui.terminal import TerminalRenderer
from rich.console import Console


def make(width: int = 80) -> tuple[TerminalRenderer, io.StringIO]:
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=width, height=30, color_system="truecolor")
    return TerminalRenderer(console, refresh_per_second=1), sink


def printed(sink: io.StringIO, width: int = 80) -> str:
    """What the screen and its scrollback hold once the region is gone (the region is redrawn in place)."""
    screen = pyte.HistoryScreen(width, 30, history=1000)
    pyte.Stream(screen).feed(sink.getvalue().replace("\n", "\r\n"))
    history = ["".join(row[x].data for x in range(width)) for row in screen.history.top]
    return "\n".join(row.rstrip() for row in [*history, *screen.display] if row.strip())


def test_a_rollback_right_after_a_paragraph_line_keeps_its_last_row_struck_through():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(TextDelta(0, "First line of the answer.\nsecond line ends here.\n"))
    renderer.show(TurnRolledBack("connection broke", 1, 5, 2.0, elapsed=1.0))
    out = printed(sink)
    assert "First line of the answer. second line ends here." in out, out
    assert "\x1b[2;9mFirst line of the answer. second line ends here." in sink.getvalue()  # struck through
    renderer.show(TurnEnded(None, False, "gave up"))
    renderer.close()
    assert printed(sink).count("second line ends here.") == 1


def test_a_new_request_right_after_a_paragraph_line_does_not_lose_its_last_row():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(TextDelta(0, "Held row of a paragraph.\n"))
    renderer.show(RequestStarted(2, 1))  # no block stop in between (a retry, a wire that sends none)
    renderer.show(TextDelta(0, "Next."))
    renderer.show(BlockStopped(0, "text"))
    renderer.show(TurnEnded("end_turn", True))
    renderer.close()
    out = printed(sink)
    assert out.count("Held row of a paragraph.") == 1, out
    assert out.index("Held row") < out.index("Next.")


def test_closing_mid_paragraph_prints_the_held_row():
    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(TextDelta(0, "Words typed before the end.\n"))
    renderer.close()  # Ctrl-C twice / the process ends with the row held
    assert "Words typed before the end." in printed(sink)


WORDS = [f"w{i:03d}" for i in range(300)]


def _all_words(rows: list[str]) -> list[str]:
    return [w for row in rows for w in re.findall(r"w\d{3}", row)]


@pytest.mark.parametrize("width", [80, 120, 20, 7])
@pytest.mark.parametrize("chunk", [1, 5, 37])
def test_every_word_once_in_order_at_any_width_and_chunking(width, chunk):
    text = ""
    for i, word in enumerate(WORDS):
        text += word + ("\n" if i % 7 == 6 else " ")
    text += "\n\n"
    blocks = Blocks(lambda: width)
    partial, rows = "", []
    for start in range(0, len(text), chunk):
        *finished, partial = (partial + text[start:start + chunk]).split("\n")
        for line in finished:
            rows += [r.plain if hasattr(r, "plain") else str(r) for r in blocks.feed(line)]
    rows += [r.plain for r in blocks.flush()]
    assert _all_words(rows) == WORDS
    lines = [r for r in rows if r]
    assert all(len(r) <= max(20, width) for r in lines), [r for r in lines if len(r) > width]


def test_a_long_url_wider_than_the_terminal_is_kept_whole_in_order():
    url = "https://example.com/" + "a" * 200 + "/end"
    blocks = Blocks(lambda: 80)
    rows = blocks.feed("see") + blocks.feed(url) + blocks.feed("after it") + blocks.flush()
    joined = "".join(r.plain for r in rows)
    assert joined.replace(" ", "") == ("see" + url + "afterit")


def test_double_width_text_never_exceeds_the_width():
    from rich.cells import cell_len

    blocks = Blocks(lambda: 40)
    line = "漢字かな交じり文の段落です。" * 3
    rows = blocks.feed(line) + blocks.feed("emoji 🎉🎉🎉 and more " * 4) + blocks.flush()
    assert all(cell_len(r.plain) <= 40 for r in rows), [cell_len(r.plain) for r in rows]
    assert "".join(r.plain for r in rows).replace(" ", "") == (line + "emoji 🎉🎉🎉 and more " * 4).replace(" ", "")


def test_an_outcome_arriving_while_a_paragraph_row_is_held_comes_after_the_words_streamed_before_it():
    """A command started by the reply ends while a later paragraph streams: what streamed before stays before."""
    from midstream.tools.events import ToolCallReady, ToolCallStarted, ToolFinished, ToolRunning
    from midstream.tools.registry import Facts, ToolResult

    renderer, sink = make()
    renderer.show(RequestStarted(1, 1))
    renderer.show(TextDelta(0, "w001 intro\n"))
    renderer.show(BlockStopped(0, "text"))
    renderer.show(ToolCallStarted(1, "t1", "bash"))
    renderer.show(ToolCallReady(1, "t1", "bash", {"command": "sleep 1"}, status="Running `sleep 1`"))
    renderer.show(ToolRunning("t1", "bash", status="Running `sleep 1`"))
    renderer.show(BlockStopped(1, "tool_use"))
    renderer.show(TextDelta(2, "w002 w003\nw004 w005\n"))  # one short row, held in the region
    renderer.show(ToolFinished("t1", "bash", ToolResult("ok", facts=Facts(exit_status=0)), 1.0,
                               status="Running `sleep 1`", done="Ran `sleep 1`"))
    renderer.show(TextDelta(2, "w006 w007\n"))
    renderer.show(BlockStopped(2, "text"))
    renderer.show(TurnEnded("end_turn", True))
    renderer.close()
    rows = printed(sink).splitlines()
    words = [w for row in rows for w in re.findall(r"w\d{3}", row)]
    assert words == [f"w{i:03d}" for i in range(1, 8)], rows
    outcome = next(i for i, row in enumerate(rows) if "Ran" in row)
    assert max(i for i, row in enumerate(rows) if "w005" in row) < outcome, rows  # streamed before it ended
    assert min(i for i, row in enumerate(rows) if "w006" in row) > outcome, rows
