"""Server-sent events from a byte stream, split on event boundaries rather than line by line.

``httpx2.EventSource`` decodes text and handles one line at a time in Python; for a large tool
input (~60,000 events per MB) that was half the client's cost. Here each chunk is scanned for
blank-line boundaries with ``bytes.find`` and only the ``data:`` lines of a finished event are
touched. Splitting on bytes is safe mid-UTF-8: a newline byte never occurs inside a multi-byte
character. CR, LF and CRLF line endings are all accepted, as the SSE spec requires.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["iter_sse"]


def iter_sse(chunks: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(event name, data)`` for each complete event; a torn last event is dropped."""
    buffer = b""
    held_cr = False
    for chunk in chunks:
        if held_cr:
            chunk = b"\r" + chunk
            held_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
                chunk, held_cr = chunk[:-1], True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n\n", start)) != -1:
            event = _parse(buffer[start:end])
            if event is not None:
                yield event
            start = end + 2
        buffer = buffer[start:]


def _parse(block: bytes) -> tuple[str, bytes] | None:
    # Fast path for what the Messages API sends: exactly "event: NAME\ndata: JSON".
    if block.startswith(b"event: "):
        newline = block.find(b"\n")
        if block.startswith(b"data: ", newline + 1) and block.find(b"\n", newline + 1) == -1:
            return block[7:newline].decode("utf-8", "replace"), block[newline + 7 :]
    elif block.startswith(b"data: ") and block.find(b"\n") == -1:  # ...and what Chat Completions sends
        return "message", block[6:]
    name = "message"
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
        # comments (":…"), id:, retry: and unknown fields are ignored
    if not data:
        return None
    return name, b"\n".join(data)
