"""Finished calls as lines: several of one kind as one (``Read 12 files``), and the plan as a checklist."""

from __future__ import annotations

from midstream.tools.events import ToolFinished
from midstream.tools.todo import Step
from midstream.tools.ui.lines import visible
from midstream.tools.ui.render import outcome_line
from rich.text import Text

__all__ = ["GROUP_AT", "checklist", "grouped"]

GROUP_AT = 3  # calls of one kind finished together from this many on are one line
_GROUPS = {"read_file": ("Read", "files"), "list_dir": ("Listed", "folders"), "glob": ("Searched", "patterns"),
           "grep": ("Searched", "patterns"), "bash": ("Ran", "commands")}

def grouped(calls: list[ToolFinished]) -> list[Text]:
    """Each call's line, or one line for three or more: ``✓ Read 12 files (340 lines): a.py, b.py …``."""
    if len(calls) < GROUP_AT:
        return [Text(visible(outcome_line(call)), style="green") for call in calls]
    verb, noun = _GROUPS.get(calls[0].name, ("", "calls"))
    verb = verb or (calls[0].done or calls[0].name).split(" ", 1)[0]
    targets = [(call.done or call.name).split(" ", 1)[-1] for call in calls]
    lines = [call.result.facts.lines for call in calls]
    counts = [call.result.facts.count for call in calls]
    total = (f" ({sum(n or 0 for n in lines):,} lines)" if any(n is not None for n in lines) else
             f" ({sum(n or 0 for n in counts):,} found)" if any(n is not None for n in counts) else "")
    shown = ", ".join(targets[:4]) + (f" +{len(targets) - 4} more" if len(targets) > 4 else "")
    return [Text(visible(f"✓ {verb} {len(calls)} {noun}{total}: {shown}"), style="green", no_wrap=True,
                 overflow="ellipsis")]



_CHECK = {"todo": ("☐", ""), "doing": ("◐", "bold"), "done": ("☑", "dim"), "dropped": ("☒", "dim strike")}


def checklist(steps: list[Step]) -> list[Text]:
    """The plan, one row per step: ☐ to do, ◐ doing, ☑ done, ☒ dropped."""
    done = sum(step.state == "done" for step in steps)
    rows = [Text(f"Plan · {done} of {len(steps)} done", style="bold")]
    for step in steps:
        mark, style = _CHECK[step.state]
        rows.append(Text(f"  {mark} {visible(step.text)}", style=style, no_wrap=True, overflow="ellipsis"))
    return rows


