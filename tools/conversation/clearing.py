"""Clearing large tool results and tool inputs: which ones, the note that replaces each, replaying it on load.

A cleared result keeps its ``tool_result`` block (so its ``tool_use`` stays answered) and its
``tool_use_id`` and ``is_error``; only the content becomes a note of what was there and how to get
it again. A cleared input keeps its ``tool_use`` block and every key of the input; only its long
strings (a ``write_file`` body, a long edit) become a note of what the call did with them. An
input is clearable in any reply, the newest included: the model wrote it, the call has run, and
what it wrote is in the workspace; without this one large write would make every later request
too long. Notes are deterministic, so a cleared history is a stable prefix for the prompt cache.
Used by tools/conversation/compaction.py, and by transcript.py to replay ``cleared`` records
(a cleared input is recorded under ``input:ID``, beside the results under ``ID``).
"""

from __future__ import annotations

import json
from typing import Any

from midstream.tools.conversation.history import as_blocks
from midstream.tools.conversation.tokens import estimate_tokens

__all__ = [
    "apply_cleared", "apply_notes", "assistant_indices", "clearable", "message_tokens", "note", "recent_from",
]

Found = tuple[int, int, Any, int]  # (message index, block index, note or cleared input, tokens freed)
_LONG_INPUT = 2000  # characters: an input string longer than this may be cleared


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
    for index in range(1, len(history)):
        message = history[index]
        if message["role"] == "assistant":
            found += _clearable_inputs(index, message)
            continue
        if index >= until:
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


def _clearable_inputs(index: int, message: dict[str, Any]) -> list[Found]:
    found = []
    for number, block in enumerate(as_blocks(message["content"])):
        args = block.get("input")
        if block.get("type") != "tool_use" or not isinstance(args, dict):
            continue
        cleared = {key: input_note(key, value, args) if isinstance(value, str) and len(value) > _LONG_INPUT else value
                   for key, value in args.items()}
        freed = estimate_tokens(args) - estimate_tokens(cleared)
        if cleared != args and freed > estimate_tokens(cleared):
            found.append((index, number, cleared, freed))
    return found


def input_note(key: str, value: str, args: dict[str, Any]) -> str:
    """What a cleared input string was: its size, and where its effect can be seen now."""
    path = args.get("path") or args.get("file_path")
    where = f" Read {path} if you need what it holds now." if isinstance(path, str) and path else ""
    return f"[Cleared to save context: the {key} of this call, {len(value):,} characters; the call ran with it.{where}]"


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


def apply_notes(history: list[dict[str, Any]], found: list[Found]) -> dict[str, Any]:
    """Replace the found results' content and inputs' strings (new dicts: sent messages stay as sent);
    what was applied, as a ``cleared`` record holds it."""
    notes: dict[str, Any] = {}
    for index, number, note, _ in found:
        message = history[index]
        blocks = as_blocks(message["content"])
        block = {k: v for k, v in blocks[number].items() if k != "cache_control"}
        if block.get("type") == "tool_use":
            notes[f"input:{block.get('id')}"] = note
            blocks[number] = {**block, "input": note}
        else:
            notes[str(block.get("tool_use_id"))] = note
            blocks[number] = {**block, "content": note}
        history[index] = {**message, "content": blocks}
    return notes


def _replayed_block(block: Any, notes: dict[str, Any]) -> Any:
    if not isinstance(block, dict):
        return block
    if block.get("type") == "tool_result" and isinstance(notes.get(str(block.get("tool_use_id"))), str):
        return {**block, "content": notes[str(block.get("tool_use_id"))]}
    if block.get("type") == "tool_use" and isinstance(notes.get(f"input:{block.get('id')}"), dict):
        return {**block, "input": notes[f"input:{block.get('id')}"]}
    return block


def apply_cleared(messages: list[dict[str, Any]], notes: dict[str, Any]) -> None:
    """Replay a ``cleared`` transcript record onto loaded messages."""
    for index, message in enumerate(messages):
        blocks = as_blocks(message["content"])
        replayed = [_replayed_block(b, notes) for b in blocks]
        if any(a is not b for a, b in zip(replayed, blocks, strict=True)):
            messages[index] = {**message, "content": replayed}
