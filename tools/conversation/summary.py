"""What goes into the summary request and around the summary: the question's history, trimmed to fit,
and the record of what the summarised part did (tools/conversation/compaction.py asks for it)."""

from __future__ import annotations

import re
from typing import Any

from midstream.tools.conversation.clearing import apply_notes, assistant_indices, clearable
from midstream.tools.conversation.history import as_blocks
from midstream.tools.conversation.tokens import prompt_tokens

__all__ = ["ACTIVITY", "SUMMARY_TITLE", "activity_of", "trimmed", "with_question"]

SUMMARY_TITLE = "[Earlier conversation, compacted]"
_LEFT_OUT = "[The beginning of the conversation did not fit in the request for the summary and is left out.]"

ACTIVITY = "## Tool calls in the summarised part"
ACTIVITY_LINE_ = re.compile(r"^- (\S+) ×(\d+)(?:: (.*))?$")


def activity_of(messages: list[dict[str, Any]]) -> str:
    """What the summarised part did, from the record rather than the model's memory: each tool with
    its call count and the paths or commands it was given (the latest ten), earlier compactions'
    counts included."""
    counts: dict[str, int] = {}
    targets: dict[str, list[str]] = {}
    for message in messages:
        for block in as_blocks(message["content"]):
            if block.get("type") == "text" and block.get("text", "").startswith(SUMMARY_TITLE):
                for line in block["text"].rpartition(ACTIVITY)[2].splitlines():
                    if found := ACTIVITY_LINE_.match(line):
                        counts[found[1]] = counts.get(found[1], 0) + int(found[2])
                        targets.setdefault(found[1], []).extend(found[3].split(", ") if found[3] else [])
            elif block.get("type") == "tool_use":
                args = block.get("input") or {}
                target = args.get("path") or args.get("command") or args.get("pattern") or ""
                name = str(block.get("name"))
                counts[name] = counts.get(name, 0) + 1
                targets.setdefault(name, []).append(str(target)[:80].replace("\n", " "))
    lines = []
    for name, count in counts.items():
        distinct = list(dict.fromkeys(t for t in reversed(targets[name]) if t))[:10][::-1]
        lines.append(f"- {name} ×{count}" + (f": {', '.join(distinct)}" if distinct else ""))
    return "\n".join(lines)


def with_question(history: list[dict[str, Any]], question: str) -> list[dict[str, Any]]:
    """The history as last sent plus the question, appended to the last user message if there is one
    (so everything before it is the cached prefix)."""
    block = {"type": "text", "text": question}
    if history and history[-1]["role"] == "user":
        last = history[-1]
        return [*history[:-1], {**last, "content": [*as_blocks(last["content"]), block]}]
    return [*history, {"role": "user", "content": [block]}]


def trimmed(messages: list[dict[str, Any]], base: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Messages for the summary request within ``limit`` tokens: old results cleared, then the newest
    ones, then the oldest messages left out (from an assistant message on, after a note saying so)."""
    def fits(candidate: list[dict[str, Any]]) -> bool:
        return prompt_tokens({**base, "messages": candidate}) <= limit

    if fits(messages):
        return messages
    messages = list(messages)
    assistants = assistant_indices(messages)
    for until in (assistants[-1] if assistants else 0, len(messages)):
        apply_notes(messages, clearable(messages, until))
        if fits(messages):
            return messages
    candidate = messages
    for start in assistants:
        candidate = [{"role": "user", "content": [{"type": "text", "text": _LEFT_OUT}]}, *messages[start:]]
        if fits(candidate):
            break
    return candidate  # if this does not fit either, the service will say so
