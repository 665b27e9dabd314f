"""todo: the model's plan for multi-step work, which the terminal draws as a checklist updating in place.

The plan travels only in the call's input (the model writes the whole list each time, as Claude
Code's TodoWrite does); the result is one short line, so an update costs its own output tokens
once and nothing after it: no copy of the list comes back, the system prompt never changes (its
cache stays valid), and the tool's definition is part of the cached tools prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from midstream.tools.registry import Access, Facts, Output, ToolContext, ToolError, Wording, tool

__all__ = ["Step", "parse_plan", "todo"]

_ITEM = re.compile(r"^\s*\[([ xX>~-])\]\s*(.+?)\s*$")
_STATES = {" ": "todo", "x": "done", "X": "done", ">": "doing", "~": "doing", "-": "dropped"}
MAX_STEPS = 30


@dataclass(frozen=True)
class Step:
    state: str  # todo, doing, done, dropped
    text: str


def parse_plan(plan: object) -> list[Step] | None:
    """The steps of a plan as the model wrote it, or None when it is not one."""
    if not isinstance(plan, list) or not plan or not all(isinstance(item, str) for item in plan):
        return None
    steps = []
    for item in plan:
        match = _ITEM.match(item)
        steps.append(Step(_STATES[match.group(1)], match.group(2)) if match else Step("todo", item.strip()))
    return steps


def _plan_words(args: dict) -> str:
    steps = parse_plan(args.get("plan"))
    return f"the plan ({len(steps)} step{'s' * (len(steps) != 1)})" if steps else "the plan"


@tool(
    wording=Wording("Updating", "Updated", words=_plan_words),
    access=lambda workspace, args: Access(),
    params={"plan": "Every step, in order, each starting with its state: '[ ] ' to do, '[>] ' doing now "
                    "(one at a time), '[x] ' done, '[-] ' dropped. Send the whole list each time."},
)
def todo(ctx: ToolContext, plan: list[str]) -> Output:
    """Keep a short plan for work of three or more steps; the person sees it as a checklist."""
    steps = parse_plan(plan)
    if steps is None:
        raise ToolError("plan must be a non-empty list of strings such as '[ ] write the test'.")
    if len(steps) > MAX_STEPS:
        raise ToolError(f"a plan of {len(steps)} steps is too long to follow; keep it to {MAX_STEPS} or fewer.")
    done = sum(step.state == "done" for step in steps)
    doing = [step.text for step in steps if step.state == "doing"]
    now = f"; doing: {doing[0]}" if doing else ""
    return Output(f"Plan updated: {done} of {len(steps)} done{now}.",
                  Facts(count=len(steps), detail=f"{done}/{len(steps)} done"))
