"""The SSE splitter on one huge line: linear in the bytes however long the line is.

    python tests/bench_sse.py [--baseline]

One event whose data line is 1, 10 or 50 MB, arriving in 64 KB chunks (what httpx2 hands us),
split by tools/wire/sse.py. ``--baseline`` also times the splitter this replaced (grow one buffer
with ``+=`` and search it from the start each chunk: quadratic), on the sizes it finishes in
reasonable time. Never fails.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator

from midstream.tools.wire.sse import iter_sse

CHUNK = 65536


def _old_iter_sse(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The splitter before issue 14, reduced to its buffering (the quadratic part)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n\n", start)) != -1:
            yield buffer[start:end]
            start = end + 2
        buffer = buffer[start:]


def _time(split: Callable[[Iterable[bytes]], Iterator[object]], data: bytes) -> float:
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    started = time.perf_counter()
    events = list(split(chunks))
    elapsed = time.perf_counter() - started
    assert len(events) == 1
    return elapsed


def main() -> None:
    baseline = "--baseline" in sys.argv
    print(f"\nSSE splitter, one event with a single data line, {CHUNK // 1024} KB chunks\n")
    print("| line | tools/wire/sse.py | per MB |" + (" before (+= buffer) |" if baseline else ""))
    print("|---|---|---|" + ("---|" if baseline else ""))
    for megabytes in (1, 10, 50):
        data = b"event: content_block_delta\ndata: " + b"x" * (megabytes * 1_000_000) + b"\n\n"
        seconds = _time(iter_sse, data)
        row = f"| {megabytes} MB | {seconds:.3f} s | {seconds / megabytes * 1000:.1f} ms |"
        if baseline:
            row += f" {_time(_old_iter_sse, data):.2f} s |" if megabytes <= 10 else " (26 s, issue 14) |"
        print(row)


if __name__ == "__main__":
    main()
