"""Finished calls as lines: several of one kind as one (``Read 12 files``), what each returned folded
under its line (kept in tools/ui/folds.py to be opened whole), and the plan as a checklist."""

from __future__ import annotations

from pathlib import Path

from midstream.tools.events import ToolAsking, ToolFinished
from midstream.tools.todo import Step
from midstream.tools.ui.diffs import fold
from midstream.tools.ui.folds import HINT, Folds, preview
from midstream.tools.ui.lines import visible
from midstream.tools.ui.render import outcome_line, preview_rows
from rich.text import Text

__all__ = ["GROUP_AT", "checklist", "folded_call", "folded_group", "grouped", "question_preview"]

GROUP_AT = 3  # calls of one kind finished together from this many on are one line
_GROUPS = {"read_file": ("Read", "files"), "list_dir": ("Listed", "folders"), "glob": ("Searched", "patterns"),
           "grep": ("Searched", "patterns"), "bash": ("Ran", "commands")}

def grouped(calls: list[ToolFinished], hint: str = "", width: int = 0) -> list[Text]:
    """Each call's line, or one line for three or more: ``✓ Read 12 files (340 lines): a.py, b.py …``,
    ending in `` · hint`` when given, the targets cut so that the hint fits in ``width``."""
    if len(calls) < GROUP_AT:
        return [Text(visible(outcome_line(call)), style="green") for call in calls]
    verb, noun = _GROUPS.get(calls[0].name, ("", "calls"))
    verb = verb or (calls[0].done or calls[0].name).split(" ", 1)[0]
    targets = [(call.done or call.name).split(" ", 1)[-1] for call in calls]
    lines = [call.result.facts.lines for call in calls]
    counts = [call.result.facts.count for call in calls]
    total = (f" ({sum(n or 0 for n in lines):,} lines)" if any(n is not None for n in lines) else
             f" ({sum(n or 0 for n in counts):,} found)" if any(n is not None for n in counts) else "")
    head = visible(f"✓ {verb} {len(calls)} {noun}{total}: ")
    tail = f" · {hint}" if hint else ""
    shown = visible(", ".join(targets[:4]) + (f" +{len(targets) - 4} more" if len(targets) > 4 else ""))
    room = width - len(head) - len(tail)
    if width and len(shown) > room:
        shown = shown[: max(1, room - 1)] + "…"
    line = Text(head + shown, style="green", no_wrap=True, overflow="ellipsis")
    line.append(tail, style="dim")
    return [line]


def folded_call(folds: Folds, call: ToolFinished, line: Text) -> list[Text]:
    """The rows under one call's outcome line: a command's output (its head and tail around a fold);
    what the terminal does not show is kept in ``folds``, and ``line`` gets the hint to open it."""
    facts = call.result.facts
    if facts.ended in ("not_run", "stopped") or call.name == "todo":
        return []
    title = visible(call.done or call.status or call.name)
    if facts.exit_status is not None:  # a command ran: its output, folded when long
        text = _body(call)
        rows, was_folded = preview(text)
        if was_folded:
            folds.add("output", title, text, call.id)
        return rows
    content = call.result.content
    if not content.strip() or (call.result.is_error and "\n" not in content.strip() and len(content) <= 240):
        return []  # nothing, or the line says it all
    folds.add("read" if call.name == "read_file" else "output", title, content, call.id)
    line.append(f" · {HINT}", style="dim")
    return []


def folded_group(folds: Folds, calls: list[ToolFinished]) -> str:
    """Three or more calls on one line: what they returned kept as one fold; the hint for their line."""
    text = "\n\n".join(f"── {visible(call.done or call.name)}\n{_body(call)}" for call in calls)
    kind = "read" if all(call.name == "read_file" for call in calls) else "output"
    title = f"{len(calls)} calls: " + ", ".join(visible(call.done or call.name) for call in calls[:4])
    folds.add(kind, title + (f" +{len(calls) - 4} more" if len(calls) > 4 else ""), text)
    return HINT


def _body(call: ToolFinished) -> str:
    """What a call returned, without the exit status its outcome line already says."""
    content, status = call.result.content, call.result.facts.exit_status
    if status is None:
        return content
    before, marker, after = content.rpartition(f"[exit status {status}]")
    return (before.rstrip("\n") + ("\n" + after.lstrip("\n") if after.strip() else "")) if marker else content


DIFF_ROWS = 12  # rows of a new file's head shown before the question (diffs fold to diffs.BUDGET)


def question_preview(asking: ToolAsking, folds: Folds) -> list[Text]:
    """What a call would change, above the question about it: a command's change set, a new file's
    head or a diff, each folded to its rows with the rest kept in ``folds``."""
    status = visible(asking.status or asking.name)
    head = Text(f"? {status} would change:", style="bold yellow")
    rows = list(asking.changes) or preview_rows(asking.name, asking.input, Path(asking.workspace), 10**6)
    if not asking.changes and not (rows and rows[0].startswith("  ")):  # an edit or an overwrite: its diff
        diff = "\n".join(rows)
        shown, was_folded = fold(diff)
        if was_folded:
            folds.add("diff", f"{status} (would change)", diff, asking.id)
        return [head, *shown]
    room = DIFF_ROWS if asking.changes else DIFF_ROWS + 1  # a new file's first row says its size
    shown = [_change_row(row) for row in rows[:room]]
    if len(rows) > room:
        folds.add("output", f"{status} would {'change' if asking.changes else 'write'}", "\n".join(rows), asking.id)
        shown.append(Text(f"    … {len(rows) - room} more lines · kept for /show", style="dim"))
    return [head, *shown]


def _change_row(row: str) -> Text:
    style = "green" if row.startswith("+") else "red" if row.startswith("-") else "dim"
    return Text(f"    {visible(row)}", style=style)


_CHECK = {"todo": ("☐", ""), "doing": ("◐", "bold"), "done": ("☑", "dim"), "dropped": ("☒", "dim strike")}


def checklist(steps: list[Step]) -> list[Text]:
    """The plan, one row per step: ☐ to do, ◐ doing, ☑ done, ☒ dropped."""
    done = sum(step.state == "done" for step in steps)
    rows = [Text(f"Plan · {done} of {len(steps)} done", style="bold")]
    for step in steps:
        mark, style = _CHECK[step.state]
        rows.append(Text(f"  {mark} {visible(step.text)}", style=style, no_wrap=True, overflow="ellipsis"))
    return rows


