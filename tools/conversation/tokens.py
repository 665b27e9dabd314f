"""How many tokens a request holds, estimated: one per four characters of each block's compact JSON.

The real tokenizer differs by maybe 20%, which moves ratios very little. The loop sizes the context
window with it (tools/conversation/clearing.py, compaction.py); the scripted server's cache model
(tools/testing/cache_model.py) counts with the same numbers, so tests and the demo agree with it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["PromptCounter", "estimate_tokens", "prompt_blocks", "prompt_tokens"]


def estimate_tokens(value: Any) -> int:
    return max(1, math.ceil(len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) / 4))


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt's size as the estimate counts it: every block, ``cache_control`` left out."""
    return sum(estimate_tokens({k: v for k, v in block.items() if k != "cache_control"})
               for _, block in prompt_blocks(body))


def prompt_blocks(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, block) in cache order: tools, then system, then each message's content."""
    flat: list[tuple[str, dict[str, Any]]] = [("tool", t) for t in body.get("tools") or []]
    system = body.get("system") or []
    flat += [("system", b) for b in ([{"type": "text", "text": system}] if isinstance(system, str) else system)]
    for message in body.get("messages") or []:
        content = message["content"]
        for block in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            flat.append((message["role"], block))
    return flat


def _content_tokens(content: Any) -> int:
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    return sum(estimate_tokens({k: v for k, v in block.items() if k != "cache_control"}) for block in blocks)


class PromptCounter:
    """``prompt_tokens``, counting each part once: a message's count is kept while the message, its
    content and the content's length are the ones it was counted from (committed messages are
    replaced, never edited in place), so a request costs its new messages, not the whole history.
    What the latest count did not use is forgotten."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[Any, Any, int, int]] = {}  # id(part) -> (part, content, length, tokens)

    def count(self, body: dict[str, Any]) -> int:
        now: dict[int, tuple[Any, Any, int, int]] = {}

        def tokens(part: Any, content: Any) -> int:
            size = len(content) if isinstance(content, list | str) else -1
            known = self._known.get(id(part))
            if known is None or known[0] is not part or known[1] is not content or known[2] != size:
                known = (part, content, size, _content_tokens(content))
            now[id(part)] = known
            return known[3]

        total = 0
        if tools := body.get("tools"):
            total += tokens(tools, tools) if isinstance(tools, list) else 0
        if system := body.get("system"):
            total += tokens(system, system)
        for message in body.get("messages") or []:
            total += tokens(message, message["content"])
        self._known = now
        return total
