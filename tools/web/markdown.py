"""Markdown for the page, rendered on the server one finished piece at a time (markdown-it-py).

A streaming text block is cut into segments at blank lines outside code fences. A segment that a
blank line has closed is rendered once and never again; the open segment is rendered again at each
finished line (not inside an open fence, where the raw text stands until it closes), so the cost
stays linear in the text. The unfinished line is never rendered: the page shows it as text.
Raw HTML in the model's text is escaped, and markdown-it refuses javascript: and data: links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

__all__ = ["Rendered", "StreamingMarkdown", "render"]

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_MD.enable(["table", "strikethrough"])
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def render(text: str) -> str:
    """Markdown to HTML, raw HTML escaped."""
    return _MD.render(text)


@dataclass(frozen=True)
class Rendered:
    """Segment ``segment`` of a block is now ``html``; the first ``chars`` characters are covered."""

    segment: int
    html: str
    chars: int


@dataclass
class StreamingMarkdown:
    """One text block's text as it streams, and the segments rendered so far.

    Linear in the text: lines are scanned once, a closed segment is rendered once, and an open
    segment past ``EAGER`` characters is rendered again only when it has doubled since (so a long
    list without a blank line costs a few renders, not one per line).
    """

    segments: list[str] = field(default_factory=list)
    chars: int = 0  # characters covered by the rendered segments
    _lines: list[str] = field(default_factory=list)  # the open segment's finished lines
    _size: int = 0  # ...their length
    _rendered_size: int = 0  # the open segment's length when it was last rendered (0: not yet)
    _tail: str = ""  # the unfinished line
    _start: int = 0  # where the open segment starts
    _fence: str = ""  # the open fence's marker, "" outside one
    _has_text: bool = False  # the open segment has a line that is not blank

    EAGER = 4_096

    def feed(self, piece: str) -> list[Rendered]:
        """Add streamed text; what was (re)rendered because lines finished."""
        if "\n" not in piece:
            self._tail += piece
            return []
        *finished, self._tail = (self._tail + piece).split("\n")
        out: list[Rendered] = []
        for text in finished:
            line = text + "\n"
            if match := _FENCE.match(line):
                marker = match.group(1)
                if not self._fence:
                    self._fence = marker
                elif marker[0] == self._fence[0] and len(marker) >= len(self._fence) and not line[match.end():].strip():
                    self._fence = ""
            elif not self._fence and not line.strip() and self._has_text:
                self._add(line)
                out.append(self._render(final=True))
                continue
            self._add(line)
        grown = self._size >= 2 * self._rendered_size or self._size < self.EAGER
        if not self._fence and grown and self._has_text:
            out.append(self._render(final=False))
        return out

    def finish(self) -> list[Rendered]:
        """The block ended: render what is left, unfinished line and open fence included."""
        if self._tail:
            self._add(self._tail)
            self._tail = ""
        if not self._lines:
            return []
        return [self._render(final=True)]

    def _add(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line)
        self._has_text = self._has_text or bool(line.strip())

    def _render(self, *, final: bool) -> Rendered:
        """Render the open segment; ``final``: it is closed, and the next one starts after it."""
        html = render("".join(self._lines))
        if self._rendered_size:
            self.segments[-1] = html
        else:
            self.segments.append(html)
        self.chars = self._start + self._size
        self._rendered_size = self._size
        if final:
            self._start, self._lines, self._size, self._rendered_size = self.chars, [], 0, 0
            self._has_text = False
        return Rendered(len(self.segments) - 1, html, self.chars)
