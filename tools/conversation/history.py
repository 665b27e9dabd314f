"""What the Messages API accepts as a conversation, checked before every request.

Every ``tool_use`` needs a ``tool_result`` in the very next message, and those results must come
first in it; a result must answer a ``tool_use`` of the message before. (Text after a ``tool_use``
inside one assistant reply is accepted by the API and the model does emit it, so it is kept.)

A violation is our bug: it is logged and reported, never sent (the API would answer 400 for the
rest of the session, the failure peers' users report).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HistoryInvalid", "answer_unfinished_tools", "as_blocks", "history_problems"]


class HistoryInvalid(RuntimeError):
    """The conversation would be rejected by the API."""


def as_blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A message's content as a list of blocks: the API accepts a bare string for one text block."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return as_blocks(message.get("content"))


def history_problems(messages: list[dict[str, Any]]) -> list[str]:
    """Every reason the API would refuse ``messages``; empty when it is valid."""
    problems = []
    if messages and messages[0].get("role") != "user":
        problems.append("the conversation does not start with a user message")
    for index, message in enumerate(messages):
        role = message.get("role")
        if index and role == messages[index - 1].get("role"):
            problems.append(f"messages {index - 1} and {index} are both {role} messages")
        blocks = _blocks(message)
        if role == "assistant":
            tool_ids = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
            if tool_ids:
                following = messages[index + 1] if index + 1 < len(messages) else None
                answered = {b.get("tool_use_id") for b in _blocks(following or {}) if b.get("type") == "tool_result"}
                missing = [i for i in tool_ids if i not in answered]
                if following is None:
                    problems.append(f"assistant message {index} ends the conversation with unanswered tool_use")
                elif missing:
                    problems.append(f"tool_use {', '.join(map(str, missing))} in message {index} has no tool_result")
        elif role == "user":
            results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
            if not all(b.get("type") == "tool_result" for b in blocks[: len(results)]):
                problems.append(f"user message {index} has content before its tool_result blocks")
            previous = messages[index - 1] if index else {}
            asked = {b.get("id") for b in _blocks(previous) if b.get("type") == "tool_use"}
            stray = [r for r in results if r not in asked]
            if stray:
                problems.append(f"tool_result {', '.join(map(str, stray))} in message {index} answers no tool_use")
        else:
            problems.append(f"message {index} has role {role!r}")
    return problems


def answer_unfinished_tools(messages: list[dict[str, Any]], reason: str) -> list[dict[str, Any]]:
    """Give every tool_use without a tool_result an error result saying ``reason``.

    Used when a session resumes after the agent died mid-tool, and after an interrupt.
    Returns the user blocks that were added (empty when nothing was missing).
    """
    if not messages or messages[-1].get("role") != "assistant":
        return []
    missing = [b["id"] for b in _blocks(messages[-1]) if b.get("type") == "tool_use"]
    added = [{"type": "tool_result", "tool_use_id": i, "content": reason, "is_error": True} for i in missing]
    if added:
        messages.append({"role": "user", "content": added})
    return added
