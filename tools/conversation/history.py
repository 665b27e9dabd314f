"""What the Messages API accepts as a conversation, checked before every request.

Every ``tool_use`` needs a ``tool_result`` in the very next message, and those results must come
first in it; a result must answer a ``tool_use`` of the message before. (Text after a ``tool_use``
inside one assistant reply is accepted by the API and the model does emit it, so it is kept.)

A violation is our bug: it is logged and reported, never sent (the API would answer 400 for the
rest of the session, the failure peers' users report).

``CommitGuard`` is the one validator every committed message passes: a message that would make
the history invalid is refused before it reaches history or the transcript. A reply is first
``repair_reply``-ed (what can be fixed deterministically: empty text blocks dropped, an empty
reply becomes no message at all); what still fails is a malformed reply, which the loop rolls
back and retries. ``repair_history`` makes any loaded transcript valid (a session written by an
older version, two agents interleaved, a crash between a reply and its tool results).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["CommitGuard", "HistoryInvalid", "as_blocks", "history_problems",
           "message_problems", "repair_history", "repair_reply"]


class HistoryInvalid(RuntimeError):
    """The conversation would be rejected by the API."""


def as_blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A message's content as a list of blocks: the API accepts a bare string for one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []  # anything else (a number, read from disk): none


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in as_blocks(message.get("content")) if isinstance(b, dict)]


def message_problems(message: dict[str, Any], seen_tool_ids: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """What the API refuses inside one message, whatever surrounds it: no content, an empty text
    block, a tool_use without a proper id or name, a tool input that is not an object, a tool_use id
    used twice (in it, or already in ``seen_tool_ids``)."""
    problems = []
    blocks = message.get("content")
    if isinstance(blocks, str):
        return [] if blocks else [f"{message.get('role')} message with empty content"]
    if not isinstance(blocks, list) or not blocks:
        return [f"{message.get('role')} message with empty content"]
    ids: set[str] = set()
    for block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append("a content block without a type")
            continue
        kind = block["type"]
        if kind == "text" and not (isinstance(block.get("text"), str) and block["text"]):
            problems.append("an empty text block")
        elif kind in ("tool_use", "server_tool_use"):
            tool_id = block.get("id")
            if not isinstance(tool_id, str) or not tool_id:
                problems.append(f"a {kind} without an id")
            elif tool_id in ids or tool_id in seen_tool_ids:
                problems.append(f"tool_use id {tool_id} used twice")
            else:
                ids.add(tool_id)
            if not isinstance(block.get("name"), str) or not block["name"]:
                problems.append(f"{kind} {tool_id} without a name")
            if not isinstance(block.get("input"), dict):
                problems.append(f"{kind} {tool_id} whose input is not an object")
    return problems


def repair_reply(message: dict[str, Any]) -> dict[str, Any] | None:
    """The reply with what can be fixed deterministically fixed: empty text blocks dropped (a refusal
    often streams one). ``None`` when nothing is left: then no assistant message is committed."""
    blocks = [b for b in as_blocks(message.get("content"))
              if not (isinstance(b, dict) and b.get("type") == "text" and not b.get("text"))]
    return {**message, "content": blocks} if blocks else None


def _tool_ids(message: dict[str, Any]) -> list[Any]:
    """Ids of client and server tool blocks: all must be unique."""
    return [b.get("id") for b in _blocks(message) if b.get("type") in ("tool_use", "server_tool_use")]


def _asked(message: dict[str, Any]) -> list[Any]:
    """Ids of the tool_use blocks our tools must answer in the next message."""
    return [b.get("id") for b in _blocks(message) if b.get("type") == "tool_use"]


class CommitGuard:
    """The validator every committed message passes, and the only code that appends to history.

    It remembers what it needs to check the next message (the tool ids used so far, the calls the
    last reply left unanswered), so a commit costs O(size of the message), whatever the length of
    the history. A history changed behind its back (a new session, compaction) is checked in
    full, once.
    """

    _TRAILING = "ends the conversation with unanswered tool_use"

    def __init__(self) -> None:
        self._tool_ids: set[str] = set()
        # The history as last seen: the same message objects with the same content lists. (Blocks are
        # never edited in place once committed; anything that rewrites history replaces messages.)
        self._known: list[tuple[dict[str, Any], Any]] = []

    def commit(self, history: list[dict[str, Any]], message: dict[str, Any]) -> dict[str, Any]:
        """Append ``message`` to ``history``, or merge it into the last message of the same role (tool
        results and the next thing the person types; a reply continued after ``pause_turn``), as the
        API itself would. Raises HistoryInvalid, changing nothing, if the result would be invalid."""
        if problems := self.problems(history, message):
            raise HistoryInvalid("refused to commit " + "; ".join(problems))
        last = history[-1] if history else None
        if last is not None and last["role"] == message["role"]:
            last["content"] = [*as_blocks(last["content"]), *as_blocks(message["content"])]
        else:
            history.append({"role": message["role"], "content": as_blocks(message["content"])})
        if message["role"] == "assistant":
            self._tool_ids.update(i for i in _tool_ids(message) if isinstance(i, str))
        if last is not None and last["role"] == message["role"]:
            self._known[-1] = (last, last["content"])
        else:
            self._known.append((history[-1], history[-1]["content"]))
        return history[-1]

    def problems(self, history: list[dict[str, Any]], message: dict[str, Any]) -> list[str]:
        """Why committing ``message`` would make ``history`` invalid; empty when it is fine."""
        self._sync(history)
        role = message.get("role")
        if role not in ("user", "assistant"):
            return [f"a message with role {role!r}"]
        problems = message_problems(message, self._tool_ids if role == "assistant" else frozenset())
        last = history[-1] if history else None
        blocks = _blocks(message)
        results = [b.get("tool_use_id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if role == "assistant":
            if last is None:
                problems.append("the conversation would start with an assistant message")
            elif last["role"] == "assistant" and _asked(last):
                problems.append("a reply after tool_use that was not answered")
        elif last is not None and last["role"] == "assistant" and (asked := _asked(last)):
            if sorted(map(str, results)) != sorted(map(str, asked)):
                problems.append(f"tool_use {', '.join(map(str, asked))} not answered exactly in the next message")
            if not all(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks[: len(results)]):
                problems.append("content before the tool_result blocks")
        elif results:
            problems.append(f"tool_result {', '.join(map(str, results))} answers no tool_use")
        return problems

    def ready_to_send(self, history: list[dict[str, Any]]) -> None:
        """Raise HistoryInvalid unless ``history`` can be sent as it is."""
        self._sync(history)
        if not history:
            raise HistoryInvalid("the conversation is empty")
        if history[-1]["role"] == "assistant" and _asked(history[-1]):  # (after pause_turn it may end in a reply)
            raise HistoryInvalid("the conversation ends with tool_use that has no tool_result")

    def _sync(self, history: list[dict[str, Any]]) -> None:
        known = self._known
        if len(history) == len(known) and all(
                m is k and m["content"] is c for m, (k, c) in zip(history, known, strict=True)):
            return
        # Changed behind our back: check all of it once. A reply whose tool results are still
        # running legitimately ends the history; everything else the API would refuse.
        if problems := [p for p in history_problems(history) if not p.endswith(self._TRAILING)]:
            raise HistoryInvalid("; ".join(problems))
        self._tool_ids = {i for m in history if m.get("role") == "assistant" for i in _tool_ids(m)
                          if isinstance(i, str)}
        self._known = [(m, m["content"]) for m in history]


def history_problems(messages: list[dict[str, Any]]) -> list[str]:
    """Every reason the API would refuse ``messages``; empty when it is valid."""
    problems = []
    seen: set[str] = set()
    for index, message in enumerate(messages):
        problems += [f"message {index}: {p}" for p in message_problems(message, seen)]
        seen.update(i for i in _tool_ids(message) if isinstance(i, str))
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


def repair_history(messages: list[dict[str, Any]], unanswered: str | Callable[[str], str]) -> list[dict[str, Any]]:
    """A valid conversation made of ``messages``, keeping all that can be kept.

    Consecutive messages of one role are merged; blocks the API refuses (empty text, a second
    tool_use with an id already used, a block that is no object) are dropped, a tool input that
    is not an object becomes ``{}``; a tool_result that answers no tool_use of the message before is
    dropped, one that does is moved first; every tool_use left unanswered is answered with an error
    result saying ``unanswered`` (or what it says for that call's id); messages left empty disappear; the
    first message is a user's.
    """
    merged: list[dict[str, Any]] = []
    seen: set[str] = set()
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            continue
        blocks = []
        for block in as_blocks(message.get("content")):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                continue
            if block["type"] == "text" and not (isinstance(block.get("text"), str) and block["text"]):
                continue
            if role == "assistant" and block["type"] in ("tool_use", "server_tool_use"):
                tool_id = block.get("id")
                if not isinstance(tool_id, str) or not tool_id or tool_id in seen:
                    continue
                seen.add(tool_id)
                if not isinstance(block.get("input"), dict):
                    block = {**block, "input": {}}
                if not isinstance(block.get("name"), str) or not block["name"]:
                    block = {**block, "name": "unknown"}
            blocks.append(block)
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += blocks
        elif blocks:
            merged.append({"role": role, "content": blocks})
    repaired: list[dict[str, Any]] = []
    for message in merged:
        if message["role"] == "user":
            asked = [b["id"] for b in _blocks(repaired[-1]) if b.get("type") == "tool_use"] if repaired else []
            answers = {b.get("tool_use_id"): b for b in message["content"] if b["type"] == "tool_result"}
            results = [answers.get(i) or {"type": "tool_result", "tool_use_id": i, "content": _said(unanswered, i),
                                          "is_error": True} for i in asked]
            rest = [b for b in message["content"] if b["type"] != "tool_result"]
            content = results + rest
            if not content:
                continue
            if repaired and repaired[-1]["role"] == "user":
                repaired[-1]["content"] += content
            else:
                repaired.append({"role": "user", "content": content})
        else:
            if not repaired:
                continue  # the API wants a user message first
            if repaired[-1]["role"] == "assistant":  # its user message vanished: answer it, then merge
                if _asked(repaired[-1]):
                    repaired.append({"role": "user", "content": _answers(repaired[-1], unanswered)})
                    repaired.append(message)
                else:
                    repaired[-1]["content"] += message["content"]
            else:
                repaired.append(message)
    if repaired and repaired[-1]["role"] == "assistant" and _asked(repaired[-1]):
        repaired.append({"role": "user", "content": _answers(repaired[-1], unanswered)})
    return repaired


def _answers(message: dict[str, Any], reason: str | Callable[[str], str]) -> list[dict[str, Any]]:
    return [{"type": "tool_result", "tool_use_id": b["id"], "content": _said(reason, b["id"]), "is_error": True}
            for b in _blocks(message) if b.get("type") == "tool_use"]


def _said(reason: str | Callable[[str], str], call_id: str) -> str:
    return reason if isinstance(reason, str) else reason(call_id)
