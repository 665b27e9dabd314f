"""Markdown, one finished line at a time, so a line is styled once and printed once.

A renderer that re-renders a whole Markdown document as it grows has to redraw lines it already
showed (a paragraph reflows, a list renumbers, a code block gets its frame); that is how printed
lines used to vanish. Here each line is styled on its own, from what it says and whether it is
inside a fenced code block: headings (left-aligned), bullets, numbered items, quotes, rules,
inline ``code``, **bold**, *italic*, ~~strike~~ and [links](url). Code inside a fence is
highlighted line by line, the fence lines themselves hidden. A list item or quote that wraps keeps
its indent on every row (a hanging indent). A table is the one thing held back: its rows wait
(shown raw in the live region) until the line after the table, then it is drawn once with box
characters, each cell wrapped to fit the width. ``Blocks`` keeps that state for one reply.

A single newline inside a paragraph is a soft break, as Markdown means it: the lines are joined
and wrapped to the width, and a paragraph is still printed as it streams. Greedy wrapping never
changes a row once a word has started the next one, so every row but the paragraph's last is
printed as soon as it is known; only that last row (less than one line) waits, shown in the live
region, for the next line or the paragraph's end. Two trailing spaces or a backslash keep a hard
break. Headings, items, quotes, rules, fences and tables end a paragraph.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal

from midstream.tools.ui.sanitise import shown
from rich import box
from rich.console import Console
from rich.style import Style
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

__all__ = ["FENCE", "Blocks", "code_line", "markdown_line", "set_theme", "table", "visible"]

FENCE = re.compile(r"^\s{0,3}(```+|~~~+)\s*([\w+#.-]*)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^(\s*)(\d{1,9}[.)])\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_INLINE = re.compile(
    r"(?P<code>`+)(?P<code_text>.+?)(?P=code)"
    r"|\*\*(?P<bold>[^*\s](?:.*?[^*\s])?)\*\*"
    r"|__(?P<bold2>[^_\s](?:.*?[^_\s])?)__(?!\w)"
    r"|~~(?P<strike>[^~\s](?:.*?[^~\s])?)~~"
    r"|(?<![*\w])\*(?P<italic>[^*\s](?:[^*]*?[^*\s])?)\*(?!\*)"
    r"|(?<!\w)_(?P<italic2>[^_\s](?:[^_]*?[^_\s])?)_(?!\w)"
    r"|\[(?P<link>[^\]]+)\]\((?P<url>[^)\s]+)\)"
)


def visible(text: str) -> str:
    """``text`` with control characters (bar newline and tab) made visible instead of obeyed (ui/sanitise.py)."""
    return shown(text)


_HEADING_STYLES = {1: "bold underline", 2: "bold", 3: "bold", 4: "bold dim", 5: "dim", 6: "dim"}
CODE_STYLE = "bold cyan"


def inline(text: str, style: str | Style = "") -> Text:
    """Inline Markdown of one line; what is not closed on this line stays as typed."""
    out = Text(style=style)
    position = 0
    for match in _INLINE.finditer(text):
        out.append(text[position:match.start()])
        position = match.end()
        if match.group("code") is not None:
            out.append(match.group("code_text"), style=CODE_STYLE)
        elif (bold := match.group("bold") or match.group("bold2")) is not None:
            out.append_text(inline(bold, "bold"))
        elif match.group("strike") is not None:
            out.append_text(inline(match.group("strike"), "strike"))
        elif (italic := match.group("italic") or match.group("italic2")) is not None:
            out.append_text(inline(italic, "italic"))
        else:
            out.append(match.group("link"), style="underline")
            out.append(f" ({match.group('url')})", style="dim")
    out.append(text[position:])
    return out


def markdown_line(line: str) -> Text | Table:
    """One line of prose Markdown (not inside a code fence), styled; an item or quote that wraps keeps
    its indent (a two-column grid: the marker, then the text wrapping beside it)."""
    if match := _HEADING.match(line):
        level = len(match.group(1))
        return inline(match.group(2), _HEADING_STYLES[level])
    if _RULE.match(line):
        return Text("─" * 40, style="dim")
    if match := _BULLET.match(line):
        return _hanging(Text(match.group(1) + "• "), inline(match.group(2)))
    if match := _NUMBERED.match(line):
        return _hanging(Text(f"{match.group(1)}{match.group(2)} "), inline(match.group(3)))
    if match := _QUOTE.match(line):
        return _hanging(Text("▌ ", style="dim"), inline(match.group(1), "italic"))
    if match := _INDENTED.match(line):  # a list item's continuation line
        return _hanging(Text(match.group(1)), inline(match.group(2)))
    return inline(line)


_INDENTED = re.compile(r"^(\s{2,})(\S.*)$")


def _hanging(marker: Text, text: Text) -> Table:
    grid = Table.grid(padding=0)
    grid.add_column(width=marker.cell_len, no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(marker, text)
    return grid


_TABLE_ROW = re.compile(r"^\s{0,3}\|.*\|\s*$")
_SEPARATOR_CELL = re.compile(r"^\s*:?-{1,}:?\s*$")


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]
    cells, cell, escaped = [], "", False
    for char in inner:
        if char == "|" and not escaped:
            cells.append(cell.strip())
            cell = ""
            continue
        escaped = char == "\\" and not escaped
        cell += char
    cells.append(cell.strip())
    return [c.replace("\\|", "|") for c in cells]


def table(rows: list[str]) -> Table | None:
    """A Markdown table (header, separator, body rows) drawn with box characters; None if it is none."""
    if len(rows) < 2 or not all(_SEPARATOR_CELL.match(c) for c in _cells(rows[1])):
        return None
    header, aligns = _cells(rows[0]), _cells(rows[1])
    drawn = Table(box=box.ROUNDED, show_header=True, header_style="bold", expand=False, pad_edge=True)
    for index, title in enumerate(header):
        spec = aligns[index].strip() if index < len(aligns) else ""
        justify: Literal["left", "center", "right"] = (
            "center" if spec.startswith(":") and spec.endswith(":") else "right" if spec.endswith(":") else "left")
        drawn.add_column(inline(title), justify=justify, overflow="fold")
    for row in rows[2:]:
        cells = _cells(row)
        cells = (cells + [""] * len(header))[:len(header)]
        drawn.add_row(*[inline(cell) for cell in cells])
    return drawn


def _prose(line: str) -> bool:
    """A line that continues a paragraph: text that starts no other block."""
    return bool(line.strip()) and not (
        FENCE.match(line) or _TABLE_ROW.match(line) or _HEADING.match(line) or _RULE.match(line)
        or _BULLET.match(line) or _NUMBERED.match(line) or _QUOTE.match(line))


_HARD_BREAK = re.compile(r"( {2,}|\\)$")
_WRAPPER = Console(file=io.StringIO(), width=80)  # Text.wrap asks for a console; only its settings are read


class Blocks:
    """One reply's Markdown state: the open code fence, the table rows held back, and the last row of
    the paragraph being written. ``width`` is the terminal's, asked at each line (it may be resized)."""

    def __init__(self, width: Callable[[], int] = lambda: 80) -> None:
        self.fence: str | None = None  # the language of an open code block ("" when unnamed)
        self.held: list[str] = []  # rows of a table not yet ended
        self.paragraph: Text | None = None  # the open paragraph's last row, not yet printed
        self._width = width

    def feed(self, line: str) -> list[Any]:
        """A finished line: what to print now (nothing for a fence line or a held table row)."""
        out: list[Any] = []
        if self.fence is None and _prose(line) and (self.paragraph is not None or not _INDENTED.match(line)):
            return self._continue(line)
        out += self.end_paragraph()
        if self.fence is None and _TABLE_ROW.match(line):
            self.held.append(line)
            if len(self.held) == 2 and table(self.held) is None:  # no separator row: not a table
                out.append(markdown_line(self.held.pop(0)))
            return out
        out += self.flush()
        if (fence := FENCE.match(line)) is not None:
            self.fence = fence.group(2) if self.fence is None else None
            return out
        out.append(code_line(line, self.fence) if self.fence is not None else markdown_line(line))
        return out

    def _continue(self, line: str) -> list[Any]:
        """A paragraph's line: joined to what is open, every row but the last printed now."""
        out = self._flush_table()  # a held "table" of one row was prose after all
        text = inline(_HARD_BREAK.sub("", line).strip())
        joined = text if self.paragraph is None else self.paragraph + Text(" ") + text
        rows = list(joined.wrap(_WRAPPER, max(20, self._width())))
        for row in rows:
            row.rstrip()  # the space a row broke at: not printed, not copied with the text
        if _HARD_BREAK.search(line):  # the row ends here, whatever follows
            self.paragraph = None
            return out + rows
        self.paragraph = rows[-1] if rows else None
        return out + rows[:-1]

    def end_paragraph(self) -> list[Any]:
        """The open paragraph's last row, if any: the paragraph ends here."""
        row, self.paragraph = self.paragraph, None
        return [row] if row is not None else []

    def flush(self) -> list[Any]:
        """The paragraph's last row and the held table, drawn."""
        return self.end_paragraph() + self._flush_table()

    def _flush_table(self) -> list[Any]:
        """The held table, drawn (or its rows as lines, when they were no table after all)."""
        held, self.held = self.held, []
        if not held:
            return []
        drawn = table(held)
        return [drawn] if drawn is not None else [markdown_line(row) for row in held]

    def live(self, partial: str) -> Text:
        """The unfinished line (and held rows, raw; the paragraph's last row) as the live region shows them."""
        if self.paragraph is not None and self.fence is None:
            if not partial:
                return self.paragraph.copy()
            if _prose(partial):  # it continues the paragraph: shown joined, as it will print
                return self.paragraph + Text(" ") + inline(partial.strip())
            return Text("\n").join([self.paragraph, self._live_line(partial)])
        return self._live_line(partial)

    def _live_line(self, partial: str) -> Text:
        shown = "\n".join([*self.held, partial]) if self.held else partial
        if self.fence is not None and not FENCE.match(partial):
            return code_line(partial, self.fence) if not self.held else Text(shown)
        return Text(shown, style="dim") if FENCE.match(partial) or self.held else inline(partial)

    def reset(self) -> None:
        self.fence, self.held, self.paragraph = None, [], None


_THEMES = {"dark": "monokai", "light": "friendly"}
_theme = ["monokai"]


def set_theme(name: str) -> None:
    """``dark`` or ``light``: the colours code is highlighted in, and inline code's."""
    global CODE_STYLE
    _theme[0] = _THEMES.get(name, "monokai")
    CODE_STYLE = "bold blue" if name == "light" else "bold cyan"
    _highlighter.cache_clear()


@lru_cache(maxsize=32)
def _highlighter(language: str) -> Syntax:
    return Syntax("", language or "text", theme=_theme[0], background_color="default")


def code_line(line: str, language: str) -> Text:
    """One line inside a fenced code block, highlighted on its own, indented."""
    try:
        highlighted = _highlighter(language).highlight(line)
    except Exception:  # an unknown language name: plain
        highlighted = Text(line)
    highlighted.rstrip()
    return Text("  ").append_text(highlighted)
