"""Diffs as a person reads them: both sides, line numbers, colour, folded to a budget; ``/diff`` for all.

A unified diff (the ``diff`` fact of an edit or an overwrite) becomes rows ``  12 - old`` /
``  12 + new`` / ``  12   context``, numbered on the side the row belongs to. When it has more rows
than the budget, context goes first, then the budget is shared between removed and added lines,
each side keeping its first rows in their order, so a 120-line rewrite shows what went and what
came instead of twelve removals. What was folded is kept with the session's other folds
(tools/ui/folds.py), for ``/diff``, ``/show`` or Ctrl-O on an empty prompt to open whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from midstream.tools.ui.folds import HINT
from midstream.tools.ui.lines import visible
from rich.text import Text

__all__ = ["BUDGET", "fold", "full", "rows_of"]

BUDGET = 16  # rows of a diff shown under its outcome line
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_STYLES = {"-": "red", "+": "green", " ": "dim", "@": "cyan dim"}


@dataclass(frozen=True)
class Row:
    sign: str  # "-", "+", " ", or "@" for a hunk's start
    number: int | None
    text: str


def rows_of(diff: str) -> list[Row]:
    """The diff's rows with their line numbers (file headers dropped)."""
    rows: list[Row] = []
    old = new = 1
    in_hunk = False
    for line in diff.splitlines():
        if not in_hunk and line.startswith(("--- ", "+++ ")):
            continue  # the file headers, before the first hunk
        if match := _HUNK.match(line):
            in_hunk = True
            old, new = int(match.group(1)), int(match.group(2))
            if rows:
                rows.append(Row("@", None, "⋮"))
            continue
        sign, text = (line[:1] or " "), line[1:]
        if sign == "-":
            rows.append(Row("-", old, text))
            old += 1
        elif sign == "+":
            rows.append(Row("+", new, text))
            new += 1
        elif sign == " ":
            rows.append(Row(" ", new, text))
            old, new = old + 1, new + 1
        else:  # "\ No newline at end of file", or a note of our own
            rows.append(Row("@", None, line))
    return rows


def _shown(rows: list[Row], budget: int) -> tuple[list[Row | str], int]:
    """The rows to show (with ``…`` notes where rows were left out) and how many were left out."""
    if len(rows) <= budget:
        return list(rows), 0
    changes = [row for row in rows if row.sign in "-+"]
    if len(changes) <= budget:  # context goes first
        keep = set(map(id, changes))
        spare = budget - len(changes)
        for row in rows:  # as much context as fits, from the top
            if spare and row.sign == " ":
                keep.add(id(row))
                spare -= 1
    else:
        removed = [row for row in changes if row.sign == "-"]
        added = [row for row in changes if row.sign == "+"]
        half = budget // 2
        take_removed = min(len(removed), max(half, budget - len(added)))
        take_added = min(len(added), budget - take_removed)
        keep = set(map(id, removed[:take_removed] + added[:take_added]))
    shown: list[Row | str] = []
    gap = 0
    for row in rows:
        if id(row) in keep:
            if gap:
                shown.append(f"… {gap} row{'s' * (gap != 1)}")
                gap = 0
            shown.append(row)
        elif row.sign != "@":
            gap += 1
    if gap:
        shown.append(f"… {gap} row{'s' * (gap != 1)}")
    return shown, len(rows) - len(keep)


def _text(row: Row | str, width: int) -> Text:
    if isinstance(row, str):
        return Text(f"    {'':>{width}} {row}", style="dim")
    number = f"{row.number:>{width}}" if row.number is not None else " " * width
    sign = row.sign if row.sign != "@" else " "
    return Text(f"    {number} {sign} {visible(row.text)}", style=_STYLES[row.sign], no_wrap=True, overflow="ellipsis")


def fold(diff: str, budget: int = BUDGET) -> tuple[list[Text], bool]:
    """The diff's rows to print under an outcome, and whether some were folded away."""
    rows = rows_of(diff)
    shown, left_out = _shown(rows, budget)
    width = max((len(str(row.number)) for row in rows if row.number is not None), default=1)
    out = [_text(row, width) for row in shown]
    if left_out:
        added = sum(row.sign == "+" for row in rows)
        removed = sum(row.sign == "-" for row in rows)
        out.append(Text(f"    … {left_out} more rows (+{added} -{removed} in all) · {HINT}", style="dim"))
    return out, bool(left_out)


def full(diff: str) -> list[Text]:
    rows = rows_of(diff)
    width = max((len(str(row.number)) for row in rows if row.number is not None), default=1)
    return [_text(row, width) for row in rows]
