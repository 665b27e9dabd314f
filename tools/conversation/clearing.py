"""Clearing old tool results: which ones, the note that replaces each, and replaying it on load.

A cleared result keeps its ``tool_result`` block (so its ``tool_use`` stays answered) and its
``tool_use_id`` and ``is_error``; only the content becomes a note of what was there and how to get
it again. Notes are deterministic, so a cleared history is a stable prefix for the prompt cache.
Used by tools/conversation/compaction.py, and by transcript.py to replay ``cleared`` records.
"""

from __future__ import annotations

import json
from typing import Any

from midstream.tools.conversation.history import as_blocks
from midstream.tools.conversation.tokens import estimate_tokens

__all__ = [
    "apply_cleared", "apply_notes", "assistant_indices", "clearable", "message_tokens", "note", "recent_from",
]

Found = tuple[int, int, str, int]  # (message index, block index, note, tokens freed)


def message_tokens(message: dict[str, Any]) -> int:
    """The message's size as the cache model counts it (``cache_control`` left out)."""
    blocks = as_blocks(message["content"])
    return sum(estimate_tokens({k: v for k, v in b.items() if k != "cache_control"}) for b in blocks)


def assistant_indices(history: list[dict[str, Any]]) -> list[int]:
    return [i for i, m in enumerate(history) if m["role"] == "assistant" and i > 0]


def recent_from(history: list[dict[str, Any]], replies: int) -> int:
    """The index of the ``replies``-th last assistant message (everything, when there are fewer)."""
    if replies <= 0:
        return len(history)
    assistants = assistant_indices(history)
    return assistants[-replies] if len(assistants) >= replies else 0


def clearable(history: list[dict[str, Any]], until: int) -> list[Found]:
    """(message, block, note, tokens freed) for each large tool result before message ``until``.

    Results in the last message, when it is included, have not been read by the model yet: their
    note says they were too large, rather than suggesting the same call again.
    """
    found = []
    for index in range(1, min(until, len(history))):
        message = history[index]
        if message["role"] != "user":
            continue
        calls = {b.get("id"): b for b in as_blocks(history[index - 1]["content"]) if b.get("type") == "tool_use"}
        for number, block in enumerate(as_blocks(message["content"])):
            if block.get("type") != "tool_result":
                continue
            content = block.get("content", "")
            text = note(calls.get(block.get("tool_use_id")), content, unread=index == len(history) - 1)
            freed = estimate_tokens(content) - estimate_tokens(text)
            if freed > estimate_tokens(text):  # at least twice the note's size, so a note is never cleared again
                found.append((index, number, text, freed))
    return found


def note(call: dict[str, Any] | None, content: Any, *, unread: bool = False) -> str:
    """What a cleared result was and how to get it again; stable, so the cache stays valid after."""
    size = len(content) if isinstance(content, str) else len(json.dumps(content, ensure_ascii=False))
    if call is None:
        what = "a tool result"
    else:
        args = json.dumps(call.get("input", {}), ensure_ascii=False, sort_keys=True)
        what = f"the result of {call.get('name')} {args if len(args) <= 200 else args[:200] + '…'}"
    if unread:
        return (f"[Cleared to save context: {what} ({size:,} characters) was too large for the context window. "
                "Ask for a smaller part of it (a line range, a narrower search or command).]")
    return (f"[Cleared to save context: {what} ({size:,} characters). Call the tool again if you need it; "
            f"what it showed may have changed since.]")


def apply_notes(history: list[dict[str, Any]], found: list[Found]) -> dict[str, str]:
    """Replace the found results' content by their notes (new dicts: sent messages stay as sent)."""
    notes: dict[str, str] = {}
    for index, number, note, _ in found:
        message = history[index]
        blocks = as_blocks(message["content"])
        block = {k: v for k, v in blocks[number].items() if k != "cache_control"}
        notes[str(block.get("tool_use_id"))] = note
        blocks[number] = {**block, "content": note}
        history[index] = {**message, "content": blocks}
    return notes


def apply_cleared(messages: list[dict[str, Any]], notes: dict[str, str]) -> None:
    """Replay a ``cleared`` transcript record onto loaded messages."""
    for index, message in enumerate(messages):
        blocks = as_blocks(message["content"])
        if any(b.get("type") == "tool_result" and b.get("tool_use_id") in notes for b in blocks):
            messages[index] = {**message, "content": [
                {**b, "content": notes[b["tool_use_id"]]} if b.get("type") == "tool_result"
                and b.get("tool_use_id") in notes else b for b in blocks]}
