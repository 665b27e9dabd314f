"""What the terminal folds, kept to be opened whole: a command's output, a file read, thinking, a diff.

One store for the session (``Folds``), newest last. Every folded line says how to open it
(``… 495 more lines · ctrl-o to expand``): Ctrl-O on an empty prompt and ``/show [N]`` open the last
(or Nth last) fold, ``/diff [N]`` the Nth last diff, ``/transcript`` the whole session with each
call's fold in its place. Memory is bounded: the last ``KEPT`` folds and at most ``BUDGET``
characters in all; older ones are let go, and asking for one says so. A single fold larger than the
budget keeps its head and its tail.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from midstream.tools.ui.lines import visible
from rich.text import Text

__all__ = ["BUDGET", "HINT", "KEPT", "Fold", "Folds", "opened", "preview"]

KEPT = 50  # folds kept, newest last
BUDGET = 4 * 1024 * 1024  # characters kept in all
HINT = "ctrl-o to expand"
HEAD, TAIL = 3, 2  # lines of a command's output shown around its fold


@dataclass(frozen=True)
class Fold:
    """One folded thing, whole: ``kind`` is output, read, thinking or diff (a unified diff)."""

    number: int  # 1 for the session's first fold
    kind: str
    title: str  # "Ran `seq 500`", "Thought for 2.1 s"
    text: str
    call_id: str = ""  # the call it came from, if any
    cut: int = 0  # characters left out of its middle: it alone was larger than the budget

    @property
    def size(self) -> int:
        return len(self.text) + len(self.title)


class Folds:
    """The folds of this session, bounded (see the module docstring)."""

    def __init__(self, size: int = KEPT, budget: int = BUDGET) -> None:
        self.size, self.budget = size, budget
        self._kept: deque[Fold] = deque()
        self._chars = 0
        self.made = 0  # folds ever added, kept or not
        self._made: dict[str, int] = {}  # and of each kind

    def add(self, kind: str, title: str, text: str, call_id: str = "") -> Fold:
        cut = 0
        if len(text) + len(title) > self.budget:  # alone too large: its head and its tail
            half = max(0, (self.budget - len(title)) // 2)
            cut = len(text) - 2 * half
            text = f"{text[:half]}\n[… {cut:,} characters not kept …]\n{text[len(text) - half:]}"
        self.made += 1
        self._made[kind] = self._made.get(kind, 0) + 1
        fold = Fold(self.made, kind, title, text, call_id, cut)
        self._kept.append(fold)
        self._chars += fold.size
        while len(self._kept) > self.size or (self._chars > self.budget and len(self._kept) > 1):
            self._chars -= self._kept.popleft().size
        return fold

    def get(self, back: int = 1, kind: str | None = None) -> Fold | None:
        """The ``back``-th newest fold (1: the last one), of ``kind`` if given; None if there is none kept."""
        kept = [f for f in self._kept if kind is None or f.kind == kind]
        return kept[-back] if 0 < back <= len(kept) else None

    def missing(self, back: int, kind: str | None = None) -> str:
        """Why ``get(back, kind)`` found nothing, in one line."""
        what = "diff" if kind == "diff" else "fold"
        kept = sum(1 for f in self._kept if kind is None or f.kind == kind)
        made = self._made.get(kind, 0) if kind else self.made
        if not made:
            return f"no {what} yet: what the terminal folds is kept here to be opened whole"
        if kept < back <= made:
            return (f"{what} {back} back is no longer kept (the last {self.size} folds, at most "
                    f"{self.budget // 2**20} MB, are); /transcript has every message and output")
        return f"only {made} {what}{'s' * (made != 1)} so far: give N from 1 to {kept}"

    def of_call(self, call_id: str) -> Fold | None:
        """The newest fold a call made, if still kept."""
        return next((f for f in reversed(self._kept) if call_id and f.call_id == call_id), None)

    def __len__(self) -> int:
        return len(self._kept)


def preview(text: str, head: int = HEAD, tail: int = TAIL) -> tuple[list[Text], bool]:
    """A command's output under its outcome line: all of it when short, else its first and last lines
    around ``… N more lines · ctrl-o to expand``; and whether it was folded."""
    lines = text.rstrip("\n").splitlines()
    if not lines:
        return [], False
    if len(lines) <= head + tail + 1:
        return [_output_row(line) for line in lines], False
    left_out = len(lines) - head - tail
    rows = [_output_row(line) for line in lines[:head]]
    rows.append(Text(f"    … {left_out:,} more lines · {HINT}", style="dim"))
    rows += [_output_row(line) for line in lines[len(lines) - tail:]]
    return rows, True


def _output_row(line: str) -> Text:
    return Text(f"    {visible(line)}", style="dim", no_wrap=True, overflow="ellipsis")


def opened(fold: Fold) -> list[Text]:
    """A fold whole, for the pager: its title, then every line."""
    from midstream.tools.ui.diffs import full

    lines = fold.text.splitlines()
    whole = "the whole diff" if fold.kind == "diff" else f"all {len(lines):,} line{'s' * (len(lines) != 1)}"
    head = Text(visible(f"{fold.title} · {whole}"), style="bold")
    if fold.cut:
        head.append(f" ({fold.cut:,} characters of its middle were not kept)", style="dim")
    if fold.kind == "diff":
        return [head, *full(fold.text)]
    style = "dim italic" if fold.kind == "thinking" else ""
    return [head, *(Text(visible(line), style=style) for line in lines)]
