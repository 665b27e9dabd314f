"""How many tokens a request holds, estimated: one per four characters of each block's compact JSON.

The real tokenizer differs by maybe 20%, which moves ratios very little. The loop sizes the context
window with it (tools/conversation/clearing.py, compaction.py); the scripted server's cache model
(tools/testing/cache_model.py) counts with the same numbers, so tests and the demo agree with it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["estimate_tokens", "prompt_blocks", "prompt_tokens"]


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
