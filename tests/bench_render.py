"""Render throughput: 20,000 text deltas with tool calls in between, into a terminal-like sink.

    python tests/bench_render.py

Prints CPU seconds per 1,000 deltas for the terminal renderer against writing the raw text, both
as fast as possible and paced at 2,000 deltas a second, and the lag from a delta's arrival to its
first appearance in the bytes written to the terminal. Never fails.
"""

from __future__ import annotations

import io
import statistics
import time

from midstream.tools.events import (  # noqa: E402
    BlockStopped,
    RequestStarted,
    TextDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolInputDelta,
    ToolProgress,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
)
from midstream.tools.registry import ToolResult  # noqa: E402
from midstream.tools.ui.terminal import TerminalRenderer  # noqa: E402
from rich.console import Console  # noqa: E402

DELTAS = 20_000
MARK_EVERY = 250


class Sink(io.StringIO):
    """A terminal stand-in that remembers when each write happened."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((time.perf_counter(), text))
        return len(text)

    def isatty(self) -> bool:
        return True


def script() -> list[tuple[object, str | None]]:
    """Events, each with the marker its text carries (if any)."""
    prose = ["Here is ", "some **bold** ", "text and ", "`code` ", "in a ", "sentence. "]
    events: list[tuple[object, str | None]] = [(RequestStarted(1, 1), None)]
    for i in range(DELTAS):
        if i % MARK_EVERY == 0:
            marker = f"Z{i}Z"
            events.append((TextDelta(0, f" {marker} "), marker))
        elif i % 40 == 39:
            events.append((TextDelta(0, "\n"), None))
        elif i % 1000 == 500:
            events.append((TextDelta(0, "\n```python\nx = 1\ny = 2\n```\n"), None))
        else:
            events.append((TextDelta(0, prose[i % len(prose)]), None))
        if i % 2000 == 1999:
            call = f"t{i}"
            events += [(ToolCallStarted(1, call, "bash"), None), (ToolInputDelta(call, '{"command": "make"}'), None),
                       (ToolCallReady(1, call, "bash", {"command": "make"}), None),
                       (ToolRunning(call, "bash", "Running `make`"), None),
                       (ToolProgress(call, "compiling"), None),
                       (ToolFinished(call, "bash", ToolResult("ok\n[exit status 0]"), 0.2), None)]
    events += [(BlockStopped(0, "text"), None), (TurnCommitted("end_turn", {"input_tokens": 1}), None),
               (TurnEnded("end_turn", True), None)]
    return events


def run(mode: str, pace: float | None) -> dict[str, float]:
    sink = Sink()
    events = script()
    arrivals: dict[str, float] = {}
    if mode == "terminal":
        renderer = TerminalRenderer(Console(file=sink, force_terminal=True, width=100), model="claude-sonnet-5-5")
        show = renderer.show
    else:
        def show(event: object) -> None:
            if isinstance(event, TextDelta):
                sink.write(event.text)
                sink.flush()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for number, (event, marker) in enumerate(events):
        if marker:
            arrivals[marker] = time.perf_counter()
        show(event)
        if pace and number % 20 == 0:
            time.sleep(max(0.0, wall0 + number / pace - time.perf_counter()))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    lags = []
    for marker, arrived in arrivals.items():
        shown = next((t for t, text in sink.writes if marker in text), None)
        if shown is not None:
            lags.append((shown - arrived) * 1000)
    lags.sort()
    return {"cpu_per_1000": cpu / DELTAS * 1000, "cpu_share": cpu / wall, "wall": wall,
            "lag_median": statistics.median(lags), "lag_p99": lags[int(len(lags) * 0.99) - 1],
            "shown": len(lags) / len(arrivals)}


def main() -> None:
    rows = []
    for pace in (None, 2000.0):
        for mode in ("raw", "terminal"):
            result = run(mode, pace)
            label = "as fast as possible" if pace is None else "paced at 2,000 deltas/s"
            rows.append((mode, label, result))
    print(f"\nRender throughput: {DELTAS:,} text deltas with {DELTAS // 2000} tool calls, into a terminal-like sink\n")
    print("| renderer | feed | CPU s per 1,000 deltas | CPU share of one core | wall s | lag median ms | "
          "lag p99 ms | markers shown |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, label, r in rows:
        print(f"| {mode} | {label} | {r['cpu_per_1000']:.4f} | {r['cpu_share']:.0%} | {r['wall']:.2f} | "
              f"{r['lag_median']:.2f} | {r['lag_p99']:.2f} | {r['shown']:.0%} |")


if __name__ == "__main__":
    main()
