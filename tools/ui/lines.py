"""Markdown, one finished line at a time, so a line is styled once and printed once.

A renderer that re-renders a whole Markdown document as it grows has to redraw lines it already
showed (a paragraph reflows, a list renumbers, a code block gets its frame); that is how printed
lines used to vanish. Here each line is styled on its own, from what it says and whether it is
inside a fenced code block: headings (left-aligned), bullets, numbered items, quotes, rules,
inline ``code``, **bold**, *italic*, ~~strike~~ and [links](url). Code inside a fence is
highlighted line by line. Tables stay as the model wrote them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from midstream.tools.ui.sanitise import shown
from rich.style import Style
from rich.syntax import Syntax
from rich.text import Text

__all__ = ["FENCE", "code_line", "markdown_line", "visible"]

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


def markdown_line(line: str) -> Text:
    """One line of prose Markdown (not inside a code fence), styled."""
    if match := _HEADING.match(line):
        level = len(match.group(1))
        return inline(match.group(2), _HEADING_STYLES[level])
    if _RULE.match(line):
        return Text("─" * 40, style="dim")
    if match := _BULLET.match(line):
        return Text(match.group(1) + "• ").append_text(inline(match.group(2)))
    if match := _NUMBERED.match(line):
        return Text(f"{match.group(1)}{match.group(2)} ").append_text(inline(match.group(3)))
    if match := _QUOTE.match(line):
        return Text("▌ ", style="dim").append_text(inline(match.group(1), "italic"))
    return inline(line)


@lru_cache(maxsize=32)
def _highlighter(language: str) -> Syntax:
    return Syntax("", language or "text", theme="monokai", background_color="default")


def code_line(line: str, language: str) -> Text:
    """One line inside a fenced code block, highlighted on its own, indented."""
    try:
        highlighted = _highlighter(language).highlight(line)
    except Exception:  # an unknown language name: plain
        highlighted = Text(line)
    highlighted.rstrip()
    return Text("  ").append_text(highlighted)
