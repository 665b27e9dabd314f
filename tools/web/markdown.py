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
    """One text block's text as it streams, and the segments rendered so far."""

    text: str = ""
    segments: list[str] = field(default_factory=list)
    chars: int = 0  # characters covered by the rendered segments
    _start: int = 0  # where the open segment starts
    _scanned: int = 0  # finished lines scanned for fences and blank lines
    _fence: str = ""  # the open fence's marker, "" outside one
    _open_rendered: bool = False  # the open segment has a rendering (the last of ``segments``)

    def feed(self, piece: str) -> list[Rendered]:
        """Add streamed text; what was (re)rendered because lines finished."""
        self.text += piece
        if "\n" not in piece:
            return []
        finished = self.text.rfind("\n") + 1
        out: list[Rendered] = []
        while self._scanned < finished:
            end = self.text.index("\n", self._scanned) + 1
            line = self.text[self._scanned:end]
            self._scanned = end
            if match := _FENCE.match(line):
                marker = match.group(1)
                if not self._fence:
                    self._fence = marker
                elif marker[0] == self._fence[0] and len(marker) >= len(self._fence) and not line[match.end():].strip():
                    self._fence = ""
            elif not self._fence and not line.strip() and self.text[self._start:self._scanned - len(line)].strip():
                out.append(self._close(end, final=True))
        if not self._fence and self.text[self._start:finished].strip():
            out.append(self._close(finished, final=False))
        return out

    def finish(self) -> list[Rendered]:
        """The block ended: render what is left, unfinished line and open fence included."""
        if self._start >= len(self.text):
            return []
        return [self._close(len(self.text), final=True)]

    def _close(self, end: int, *, final: bool) -> Rendered:
        """Render the open segment up to ``end``; ``final``: it is closed, the next one starts at ``end``."""
        html = render(self.text[self._start:end])
        if self._open_rendered:
            self.segments[-1] = html
        else:
            self.segments.append(html)
        self.chars = end
        self._open_rendered = not final
        if final:
            self._start = end
        return Rendered(len(self.segments) - 1, html, end)
