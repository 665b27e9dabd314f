"""The prompt-cache accounting of the Messages API, modelled for the scripted server.

For a request, the prompt is flattened in cache order (each tool definition, each system block,
each message content block). A breakpoint is a block with ``cache_control``. Then, as documented:

- **read**: the longest prefix that is in the cache, looked for at each breakpoint and at most
  20 blocks back from it, is reported as ``cache_read_input_tokens``; a hit refreshes its TTL;
- **write**: the prefix up to each breakpoint past the hit is stored (for 5 minutes, or 1 hour with
  ``"ttl": "1h"``) if it reaches the model family's minimum cacheable length; the tokens from the
  hit to the last stored breakpoint are ``cache_creation_input_tokens``;
- **input**: everything else (after the last breakpoint, or all of it when nothing is cacheable)
  is ``input_tokens``.

Simplifications: tokens are estimated as one per four characters of each block's compact JSON
(the real tokenizer differs by maybe 20%, which moves ratios very little); per-message framing
tokens are not counted; the minimum length is 1,024 tokens (2,048 for Haiku models); the cache is
one per server, exact-match on block content (``cache_control`` itself is not part of the key),
and never evicts before the TTL.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from midstream.tools.conversation.tokens import estimate_tokens, prompt_blocks

__all__ = ["CacheModel"]

LOOKBACK_BLOCKS = 20


@dataclass
class CacheModel:
    """One server's prompt cache; ``usage(body)`` is what the API would report for that request."""

    clock: Callable[[], float] = time.monotonic
    entries: dict[str, float] = field(default_factory=dict)  # prefix digest -> expiry time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        minimum = 2048 if "haiku" in str(body.get("model", "")) else 1024
        digests, totals, markers = [], [], []
        running, total = hashlib.sha256(), 0
        for where, block in prompt_blocks(body):
            key = {k: v for k, v in block.items() if k != "cache_control"}
            running.update(json.dumps([where, key], sort_keys=True).encode())
            digests.append(running.copy().hexdigest())
            total += estimate_tokens(key)
            totals.append(total)
            markers.append(block.get("cache_control"))
        breakpoints = [i for i, marker in enumerate(markers) if marker]
        with self._lock:
            now = self.clock()
            hit = -1
            for point in breakpoints:
                for index in range(point, max(-1, point - LOOKBACK_BLOCKS), -1):
                    if self.entries.get(digests[index], 0.0) > now:
                        hit = max(hit, index)
                        break
            read = totals[hit] if hit >= 0 else 0
            if hit >= 0:
                ttl = 3600.0 if (markers[hit] or {}).get("ttl") == "1h" else 300.0
                self.entries[digests[hit]] = max(self.entries[digests[hit]], now + ttl)
            written_to = hit
            for point in breakpoints:
                if point > hit and totals[point] >= minimum:
                    ttl = 3600.0 if (markers[point] or {}).get("ttl") == "1h" else 300.0
                    self.entries[digests[point]] = now + ttl
                    written_to = max(written_to, point)
        creation = totals[written_to] - read if written_to > hit else 0
        return {"input_tokens": total - read - creation, "cache_read_input_tokens": read,
                "cache_creation_input_tokens": creation}
