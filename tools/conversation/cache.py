"""Prompt caching: where the cache_control breakpoints go, and an audit of what each reply read.

The API caches prefixes in the order tools → system → messages, and allows four breakpoints:

1. the last tool definition: the tools stay cached even when the system prompt changes;
2. the last system block;
3. the last block of the last message: this request writes its whole prefix, so the next request,
   which only appends the reply and a new user message, reads all of it;
4. the last block of the user message before the latest assistant reply: that is exactly where
   the previous request put breakpoint 3. The API looks for a cached prefix at most 20 blocks back
   from a breakpoint, and one turn with many parallel tool calls adds more than 20 blocks (each
   call is a tool_use and a tool_result), which would otherwise turn a cache read into a rewrite.

nanobot marks the second-to-last message instead, because it injects volatile runtime context
into the last one, which would make a breakpoint there write an entry no later request reads.
We keep volatile facts out of messages that are already sent (the date is told once, in a new
user message), so the last message is stable and is the right place.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from midstream.tools.conversation.usage import Usage

__all__ = ["CacheAudit", "apply_cache_control"]


def _marker(ttl: str) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def apply_cache_control(body: dict[str, Any], ttl: str = "5m") -> dict[str, Any]:
    """A copy of ``body`` with the four breakpoints set; history itself is never touched."""
    body = {**body}
    marker = _marker(ttl)
    if body.get("tools"):
        body["tools"] = [*body["tools"][:-1], {**body["tools"][-1], "cache_control": marker}]
    system = body.get("system")
    if isinstance(system, str) and system:
        system = [{"type": "text", "text": system}]
    if system:
        body["system"] = [*system[:-1], {**system[-1], "cache_control": marker}]
    messages = copy.copy(body.get("messages") or [])
    tail = [len(messages) - 1] if messages else []
    last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last_assistant is not None and last_assistant > 0 and messages[last_assistant - 1]["role"] == "user":
        tail.append(last_assistant - 1)
    for index in tail:
        message = messages[index]
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        if not blocks:
            continue
        blocks[-1] = {**blocks[-1], "cache_control": marker}
        messages[index] = {**message, "content": blocks}
    body["messages"] = messages
    return body


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class _Fingerprint:
    tools: str
    system: str
    messages: list[str]
    at: float


@dataclass
class CacheAudit:
    """After each reply: did it read what the previous request cached? If not, why, said once.

    A request should read at least half of what the previous one read and wrote, when the
    previous one used the cache and it was sent within the TTL. When it did not, the fingerprints
    of the two requests tell what changed: the tool definitions, the system prompt, or a message
    that was already sent; with none of those, the entry expired or was evicted.
    """

    ttl_seconds: float = 300.0
    _previous: _Fingerprint | None = None
    _previous_cached: int = 0
    _reported: set[str] = field(default_factory=set)
    # id(message) -> (message, its content list, that list's length, digest): a message already
    # hashed is not hashed again (committed messages are never edited in place), so a request's
    # fingerprint costs what is new since the last one, not the whole history.
    _digests: dict[int, tuple[Any, Any, int, str]] = field(default_factory=dict)

    def fingerprint(self, body: dict[str, Any]) -> _Fingerprint:
        digests: dict[int, tuple[Any, Any, int, str]] = {}
        hashes = []
        for message in body.get("messages", []):
            content = message.get("content")
            size = len(content) if isinstance(content, list) else -1
            known = self._digests.get(id(message))
            if known is None or known[0] is not message or known[1] is not content or known[2] != size:
                known = (message, content, size, _digest(message))
            digests[id(message)] = known
            hashes.append(known[3])
        parts = []
        for part in (body.get("tools"), body.get("system")):  # the same objects request after request
            known = self._digests.get(id(part))
            if known is None or known[0] is not part or known[2] != (len(part) if isinstance(part, list) else -1):
                known = (part, part, len(part) if isinstance(part, list) else -1, _digest(part))
            digests[id(part)] = known
            parts.append(known[3])
        self._digests = digests
        return _Fingerprint(parts[0], parts[1], hashes, time.monotonic())

    def forget(self) -> None:
        """The history was rewritten on purpose (cleared or compacted): the next request is not compared."""
        self._previous, self._previous_cached = None, 0

    def check(self, sent: _Fingerprint, usage: Usage) -> str | None:
        """Record this request; return a warning the first time a given cause breaks the cache."""
        previous, expected = self._previous, self._previous_cached
        self._previous, self._previous_cached = sent, usage.cache_read + usage.cache_write + usage.cache_write_1h
        if previous is None or expected == 0 or usage.cache_read >= expected * 0.5:
            return None
        if sent.tools != previous.tools:
            cause = "the tool definitions changed"
        elif sent.system != previous.system:
            cause = "the system prompt changed"
        elif sent.messages[: len(previous.messages)] != previous.messages:
            index = next(i for i, (a, b) in enumerate(zip(sent.messages, previous.messages, strict=False)) if a != b)
            cause = f"message {index} of the history changed after it was sent"
        elif sent.at - previous.at > self.ttl_seconds:
            cause = f"the cache entry expired ({sent.at - previous.at:.0f} s since the last request)"
        else:
            cause = "the cache entry was evicted by the service"
        if cause.split(" (")[0] in self._reported:
            return None
        self._reported.add(cause.split(" (")[0])
        lost = expected - usage.cache_read
        return (f"prompt cache missed: {cause}, so ~{lost:,} tokens were written again instead of read "
                f"(this costs 12.5x a cache read)")
