"""The request body, serialised incrementally: each message is turned into JSON once.

A long session sends the same messages again with every request; re-serialising ten megabytes of
history took longer than everything else the client does per request. Committed messages are
never changed in place (history appends, and a merge replaces a message's content list), so a
message's JSON is kept while the message, its content list and that list's length are the ones
it was made from. Anything else (a new message, the copies that carry ``cache_control``) is
serialised afresh. What was not used by the latest request is forgotten.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyEncoder"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


class BodyEncoder:
    """``encode(body)`` gives the same bytes as ``json.dumps(body)``, reusing what it made before."""

    def __init__(self) -> None:
        # id(message) -> (message, its content, len(content), its JSON); the references keep ids unique
        self._made: dict[int, tuple[Any, Any, int, bytes]] = {}

    def encode(self, body: dict[str, Any]) -> bytes:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _dumps(body).encode()
        rest = {k: v for k, v in body.items() if k != "messages"}
        made: dict[int, tuple[Any, Any, int, bytes]] = {}
        head = _dumps(rest).encode()
        pieces = [head[:-1], b"," if len(head) > 2 else b"", b'"messages":[']
        for number, message in enumerate(messages):
            content = message.get("content")
            size = len(content) if isinstance(content, list) else -1
            known = self._made.get(id(message))
            if known is not None and known[0] is message and known[1] is content and known[2] == size:
                entry = known
            else:
                entry = (message, content, size, _dumps(message).encode())
            made[id(message)] = entry
            if number:
                pieces.append(b",")
            pieces.append(entry[3])
        self._made = made
        pieces.append(b"]}")
        return b"".join(pieces)  # one copy of the whole body, no intermediate ones
