"""The request body, serialised incrementally: each message is turned into JSON once.

A long session sends the same messages again with every request; re-serialising ten megabytes of
history took longer than everything else the client does per request. Committed messages are
never changed in place (history appends, and a merge replaces a message's content list), so a
message's JSON is kept while the message, its content list and that list's length are the ones
it was made from. Anything else (a new message, the copies that carry ``cache_control``) is
serialised afresh. What was not used by the latest request is forgotten.

The body is not even joined into one ``bytes``: older messages are sealed, about a megabyte at a
time, into segments that are reused as they are, and ``parts()`` hands the HTTP client those
segments plus the few newest messages, to be written one after the other. A 10 MB history then
costs a handful of ``send`` calls per request and no copy at all on our side.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyEncoder"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
_SEGMENT = 1 << 20  # seal older messages into pieces of about this many bytes
_UNSEALED = 4  # the newest messages are never sealed: cache_control and merges change them


_Key = tuple[Any, Any, int]  # (message, its content, len(content)); the references keep ids unique


def _key(message: dict[str, Any]) -> _Key:
    content = message.get("content")
    return (message, content, len(content) if isinstance(content, list) else -1)


def _same(message: dict[str, Any], key: _Key) -> bool:
    content = message.get("content")
    return key[0] is message and key[1] is content and key[2] == (len(content) if isinstance(content, list) else -1)


class BodyEncoder:
    """``parts(body)`` are bytes that together are ``json.dumps(body)``, reusing what was made before."""

    def __init__(self) -> None:
        self._made: dict[int, tuple[_Key, bytes]] = {}  # id(message) -> its JSON
        self._segments: list[tuple[list[_Key], bytes]] = []  # sealed runs of messages, each ending in ","

    def encode(self, body: dict[str, Any]) -> bytes:
        return b"".join(self.parts(body))

    def parts(self, body: dict[str, Any]) -> list[bytes]:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return [_dumps(body).encode()]
        head = _dumps({k: v for k, v in body.items() if k != "messages"}).encode()
        parts = [head[:-1] + (b"," if len(head) > 2 else b"") + b'"messages":[']
        position = 0
        segments: list[tuple[list[_Key], bytes]] = []
        for keys, data in self._segments:  # reuse sealed segments while they still match
            if len(keys) > len(messages) - position - _UNSEALED or not all(
                    _same(messages[position + i], key) for i, key in enumerate(keys)):
                break
            segments.append((keys, data))
            parts.append(data)
            position += len(keys)
        made: dict[int, tuple[_Key, bytes]] = {}
        run: list[tuple[_Key, bytes]] = []
        run_size = 0
        rest: list[bytes] = []
        sealable = len(messages) - _UNSEALED
        for index in range(position, len(messages)):
            message = messages[index]
            known = self._made.get(id(message))
            entry = known if known is not None and _same(message, known[0]) else (_key(message),
                                                                                 _dumps(message).encode())
            if index < sealable:
                run.append(entry)
                run_size += len(entry[1])
                if run_size >= _SEGMENT:
                    data = b"".join(piece for _, json_bytes in run for piece in (json_bytes, b","))
                    segments.append(([key for key, _ in run], data))
                    parts.append(data)
                    run, run_size = [], 0
                continue
            made[id(message)] = entry
            rest.append(entry[1])
        for entry in run:  # not enough for a segment yet: kept per message
            made[id(entry[0][0])] = entry
        pieces = [json_bytes for _, json_bytes in run] + rest
        parts.append(b",".join(pieces) + b"]}")
        if not pieces and segments:  # (cannot happen with _UNSEALED > 0) no trailing comma
            parts[-2] = parts[-2][:-1]
        self._segments, self._made = segments, made
        return parts
