"""The session picker of ``--resume`` and ``/resume`` on a terminal: a list to move through and filter.

Drawn inline under the prompt with prompt_toolkit (imported here, only when the picker opens, never
on the ``-p`` path) and erased when it closes. Newest first, the newest highlighted, so Enter at once
resumes it; Up/Down (Ctrl-P/Ctrl-N, and j/k while nothing is typed) move; typing filters the rows by
what was said in them (``/`` first for a word that starts with j or k); Backspace edits the filter;
Esc or Ctrl-C leaves without choosing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from midstream.tools.cli.sessions import SessionInfo, row
from midstream.tools.ui.sanitise import shown

__all__ = ["Picker", "pick"]

HEADER = "↑↓ move · Enter resumes · typing filters · Esc cancels"


class Picker:
    """The picker's state, apart from any terminal: the rows, the filter and the highlighted row."""

    def __init__(self, sessions: list[SessionInfo], now: float | None = None) -> None:
        self.sessions = sessions
        self.now = time.time() if now is None else now
        self.filter = ""
        self.searching = False  # "/" typed: j and k are letters of the filter, not moves
        self.selected = 0  # in ``rows()``
        self.top = 0  # the first row shown when they do not all fit

    def rows(self) -> list[SessionInfo]:
        """The sessions that match every word of the filter, in what was said or in the id."""
        words = self.filter.lower().split()
        if not words:
            return self.sessions
        return [s for s in self.sessions if all(w in f"{s.id}\n{s.said}\n{s.problem}".lower() for w in words)]

    def move(self, by: int) -> None:
        self.selected = max(0, min(len(self.rows()) - 1, self.selected + by))

    def type(self, text: str) -> None:
        """Printable keys: j/k move while nothing is typed, ``/`` starts a filter, the rest filters."""
        for char in text:
            if not self.filter and not self.searching and char in "jk":
                self.move(1 if char == "j" else -1)
            elif not self.filter and not self.searching and char == "/":
                self.searching = True
            elif char.isprintable():
                self.filter += char
                self.selected = self.top = 0

    def erase(self) -> None:
        if self.filter:
            self.filter = self.filter[:-1]
            self.selected = self.top = 0
        else:
            self.searching = False

    def chosen(self) -> SessionInfo | None:
        rows = self.rows()
        return rows[self.selected] if 0 <= self.selected < len(rows) else None

    def lines(self, width: int, height: int) -> list[tuple[str, str]]:
        """What is drawn, as (style, text) rows: a title, the filter, then the rows that fit in ``height``."""
        rows = self.rows()
        count = f"{len(rows)} of {len(self.sessions)}" if self.filter else f"{len(self.sessions)}"
        out = [("class:title", _cut(f"Resume ({count}) · {HEADER}", width))]
        typed = self.filter or ("/" if self.searching else "")
        out.append(("class:filter", _cut(f"filter: {typed}▏", width)) if typed or self.searching
                   else ("class:hint", _cut("filter: (type to filter)", width)))
        room = max(1, height - len(out))
        if not rows:
            out.append(("class:hint", _cut(f"  no session matches {self.filter!r} (Backspace edits it)", width)))
            return out
        if self.selected < self.top:
            self.top = self.selected
        elif self.selected >= self.top + room:
            self.top = self.selected - room + 1
        for index in range(self.top, min(len(rows), self.top + room)):
            mark = "›" if index == self.selected else " "
            text = shown(row(rows[index], self.now, width - 2), one_line=True)
            out.append(("class:selected" if index == self.selected else "", _cut(f"{mark} {text}", width)))
        return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def pick(sessions: list[SessionInfo]) -> SessionInfo | None:
    """Show the picker on the terminal until the person chooses (the session) or leaves (None)."""
    from midstream.tools.cli.prompt import signals_kept
    from prompt_toolkit.application import Application
    from prompt_toolkit.formatted_text import FormattedText
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.keys import Keys
    from prompt_toolkit.layout import Layout, Window
    from prompt_toolkit.layout.controls import FormattedTextControl
    from prompt_toolkit.output.vt100 import Vt100_Output
    from prompt_toolkit.styles import Style

    state = Picker(sessions)
    output = Vt100_Output.from_pty(sys.stdout)
    output.enable_cpr = False  # no cursor-position requests a terminal might never answer (as the prompt)

    def height() -> int:
        return max(3, min(len(sessions) + 2, output.get_size().rows - 2))

    def draw() -> Any:
        width = max(20, output.get_size().columns - 1)  # never the last column: no wrap, whatever the terminal
        fragments: list[tuple[str, str]] = []
        for style, text in state.lines(width, height()):
            fragments += [(style, text), ("", "\n")]
        return FormattedText(fragments[:-1])

    keys = KeyBindings()

    @keys.add("up")
    @keys.add("c-p")
    def _up(event: Any) -> None:
        state.move(-1)

    @keys.add("down")
    @keys.add("c-n")
    def _down(event: Any) -> None:
        state.move(1)

    @keys.add("pageup")
    def _page_up(event: Any) -> None:
        state.move(-(height() - 2))

    @keys.add("pagedown")
    def _page_down(event: Any) -> None:
        state.move(height() - 2)

    @keys.add("enter")
    @keys.add("c-j")
    def _enter(event: Any) -> None:
        if (chosen := state.chosen()) is not None:
            event.app.exit(result=chosen)

    @keys.add("escape", eager=True)
    @keys.add("c-c")
    @keys.add("c-d")
    def _leave(event: Any) -> None:
        event.app.exit(result=None)

    @keys.add("backspace")
    @keys.add("c-h")
    def _erase(event: Any) -> None:
        state.erase()

    @keys.add("c-u")
    def _clear(event: Any) -> None:
        state.filter, state.searching, state.selected = "", False, 0

    @keys.add(Keys.Any)
    def _type(event: Any) -> None:
        state.type(event.data)

    @keys.add(Keys.BracketedPaste)
    def _paste(event: Any) -> None:
        state.type(" ".join(event.data.split()))

    app: Application[SessionInfo | None] = Application(
        layout=Layout(Window(FormattedTextControl(draw, show_cursor=False), height=lambda: height(),
                             wrap_lines=False)),
        key_bindings=keys, style=Style.from_dict({"title": "bold", "hint": "fg:ansibrightblack",
                                                  "filter": "fg:ansicyan", "selected": "reverse"}),
        output=output, full_screen=False, erase_when_done=True, mouse_support=False,
    )
    with signals_kept():
        return app.run(handle_sigint=False)
