"""The session picker's listing and the full view, timed against their naive forms.

    python tests/bench_full_view.py

Prints a table: listing 50 sessions of 200 messages each (tool results of 20 KB among them) as the
picker does (only lines naming the person are parsed) against parsing every line; and opening
100,000 lines whole as the pager gets them against printing each row through rich. Never fails.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text


def _sessions(workspace: Path, count: int = 50, messages: int = 200) -> None:
    from midstream.tools.conversation.transcript import Transcript

    for n in range(count):
        transcript = Transcript.create(workspace, "bench")
        for m in range(messages // 2):
            transcript.append({"role": "user", "content": [{"type": "text", "text": f"message {m} of session {n}"}]})
            transcript.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": f"t{m}", "name": "bash", "input": {"command": "seq 5000"}}]})
            transcript.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"t{m}", "content": "x" * 20_000}]})
            transcript.append({"role": "assistant", "content": [{"type": "text", "text": "ok " * 50}]})
        transcript.close()


def _parse_every_line(workspace: Path) -> int:
    from midstream.tools.conversation.transcript import Transcript

    found = 0
    for path in Transcript.sessions(workspace):
        for line in path.read_bytes().splitlines():
            found += json.loads(line).get("type") == "message"
    return found


def _timed(work, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    from midstream.tools.cli.sessions import list_sessions
    from midstream.tools.ui.pager import _ansi

    with tempfile.TemporaryDirectory() as home:
        os.environ["XDG_STATE_HOME"] = home
        workspace = Path(home) / "ws"
        workspace.mkdir()
        _sessions(workspace)
        size = sum(p.stat().st_size for p in (Path(home) / "midstream").rglob("*.jsonl"))
        listing = _timed(lambda: list_sessions(workspace))
        naive = _timed(lambda: _parse_every_line(workspace))
        floor = _timed(lambda: [p.read_bytes() for p in (Path(home) / "midstream").rglob("*.jsonl")])
    rows = [Text(f"    line {i} of a long command's output", style="dim") for i in range(100_000)]
    ours = _timed(lambda: _ansi(rows, 120), repeat=2)

    def through_rich() -> None:
        console = Console(file=io.StringIO(), force_terminal=True, width=119, highlight=False, soft_wrap=True)
        for row in rows:
            console.print(row)

    rich_time = _timed(through_rich, repeat=1)
    print(f"| what ({size / 2**20:.0f} MB of sessions; 100,000 lines opened) | seconds |")
    print("|---|---|")
    print(f"| list 50 sessions as the picker does | {listing:.3f} |")
    print(f"| baseline: parse every line of them | {naive:.3f} |")
    print(f"| floor: read their bytes | {floor:.3f} |")
    print(f"| 100,000 lines to the pager, as /transcript does | {ours:.3f} |")
    print(f"| baseline: each row printed through rich | {rich_time:.3f} |")


if __name__ == "__main__":
    main()
