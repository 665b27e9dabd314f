"""Markdown one line at a time: soft breaks joined and wrapped as the paragraph streams, hard breaks kept."""

from __future__ import annotations

from midstream.tools.ui.lines import Blocks
from rich.text import Text


def plain(items: list[object]) -> list[str]:
    return [item.plain if isinstance(item, Text) else type(item).__name__ for item in items]


def feed_all(blocks: Blocks, text: str) -> list[str]:
    out: list[str] = []
    for line in text.split("\n"):
        out += plain(blocks.feed(line))
    return out + plain(blocks.flush())


def test_single_newlines_inside_a_paragraph_are_soft_breaks():
    out = feed_all(Blocks(lambda: 80), "One line of a paragraph\nand the next line of it.\n\nA second paragraph.")
    assert out == ["One line of a paragraph and the next line of it.", "", "A second paragraph."]


def test_rows_are_printed_as_soon_as_they_are_known_and_only_the_last_waits():
    blocks = Blocks(lambda: 24)
    first = plain(blocks.feed("alpha beta gamma delta epsilon zeta eta"))
    assert first == ["alpha beta gamma delta"]  # the full row is out before the paragraph ends
    assert blocks.live("").plain == "epsilon zeta eta"  # the last row waits, in the live region
    assert blocks.live("theta").plain == "epsilon zeta eta theta"  # a continuation shows joined, as it prints
    second = plain(blocks.feed("theta iota kappa lambda mu"))
    assert second == ["epsilon zeta eta theta"] and plain(blocks.flush()) == ["iota kappa lambda mu"]
    assert all(len(row) <= 24 and row == row.rstrip() for row in first + second)


def test_a_hard_break_ends_the_row_and_blocks_end_the_paragraph():
    text = ("Two spaces end this row  \nso this starts one\\\nand a backslash too\n# A heading\nafter it\n"
            "- an item\nprose after an item\n> a quote\n```\ncode\n```\n| a | b |\n|---|---|\n| 1 | 2 |\nend")
    out = feed_all(Blocks(lambda: 80), text)
    assert out[:3] == ["Two spaces end this row", "so this starts one", "and a backslash too"]
    assert out[3:6] == ["A heading", "after it", "Table"]  # the heading alone; the item is a hanging grid
    assert out[6:] == ["prose after an item", "Table", "  code", "Table", "end"]  # quote grid, code, the table


def test_a_width_change_between_lines_rewraps_only_what_is_not_printed():
    width = [40]
    blocks = Blocks(lambda: width[0])
    out = plain(blocks.feed("one two three four five six seven eight nine ten eleven"))
    width[0] = 20  # the terminal was made narrower
    out += plain(blocks.feed("twelve thirteen fourteen"))
    out += plain(blocks.flush())
    words = " ".join(out).split()
    assert words == "one two three four five six seven eight nine ten eleven twelve thirteen fourteen".split()
    assert all(len(row) <= 40 for row in out) and all(len(row) <= 20 for row in out[1:])


def test_an_indented_line_after_prose_continues_it_but_after_an_item_hangs():
    assert feed_all(Blocks(lambda: 80), "Some prose\n   continued, indented") == ["Some prose continued, indented"]
    assert feed_all(Blocks(lambda: 80), "- an item\n  its continuation") == ["Table", "Table"]


def test_inline_styles_survive_the_join():
    blocks = Blocks(lambda: 80)
    blocks.feed("Some **bold** text")
    blocks.feed("and `code`.")
    (row,) = blocks.flush()
    assert row.plain == "Some bold text and code."
    styles = {row.plain[span.start:span.end]: str(span.style) for span in row.spans}
    assert styles["bold"] == "bold" and ("cyan" in styles["code"] or "blue" in styles["code"])
