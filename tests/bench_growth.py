"""Growth benchmark: per-request cost as the server sees it, as history grows. Prints tables; never fails.

At a raw loopback server (tools/testing/raw_server.py), the gap between the last byte of one answer
and the first byte of the next request, through the real program (``midstream --continue -p``):
each answer asks for one (or five) ``read_file`` calls of a small file, 200 answers in a row, over a
history of 10 KB, 1 MB and 10 MB loaded from a transcript. The first 20 gaps against the last 20
say whether the cost grows with the session. The baseline, in the same run, is a bare client that
posts the same bodies on one connection and does nothing else.

    python tests/bench_growth.py            # 200 requests per size
    python tests/bench_growth.py --requests 60
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.* helpers

import httpx2  # noqa: E402
from midstream.tools.conversation.transcript import Transcript  # noqa: E402
from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes  # noqa: E402
from midstream.tools.testing.scripted_server import Text, ToolUse, reply  # noqa: E402

from tests.bench_engine import table  # noqa: E402
from tests.helpers import program_env  # noqa: E402

SIZES = {"10 KB": 10_000, "1 MB": 1_000_000, "10 MB": 10_000_000}


def _history(size: int) -> list[dict]:
    """Earlier turns of ``size`` bytes: read_file calls whose results are 50 KB (or less) of text."""
    messages: list[dict] = [{"role": "user", "content": [{"type": "text", "text": "read the project"}]}]
    made, n = 0, 0
    while made < size:
        piece = min(50_000, size - made)
        text = "".join(f"{i:08d} some source line of the project\n" for i in range(piece // 40 + 1))[:piece]
        messages.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"old{n}", "name": "read_file", "input": {"path": f"src/f{n}.py"}}]})
        result = {"type": "tool_result", "tool_use_id": f"old{n}", "content": text}
        messages.append({"role": "user", "content": [result]})
        made += piece
        n += 1
    messages.append({"role": "assistant", "content": [{"type": "text", "text": "read it all"}]})
    return messages


def _gaps(server: RawServer) -> list[float]:
    requests = server.requests
    return [(b.arrived - a.answered) * 1000 for a, b in zip(requests, requests[1:], strict=False)]


def _through_the_program(size: int, calls: int, requests: int) -> list[float]:
    with tempfile.TemporaryDirectory() as root:
        workspace, state = Path(root) / "ws", Path(root) / "state"
        workspace.mkdir()
        (workspace / "a.txt").write_text("a small file\n")
        env = program_env(XDG_STATE_HOME=str(state), HOME=root)
        os.environ["XDG_STATE_HOME"] = str(state)
        transcript = Transcript.create(workspace, "claude-bench")
        for message in _history(size):
            transcript.append(message)
        transcript.close()
        answers = [reply_bytes("anthropic", reply(*(ToolUse(f"r{n}_{c}", "read_file", {"path": "a.txt"})
                                                     for c in range(calls)))["events"]) for n in range(requests)]
        answers.append(reply_bytes("anthropic", reply(Text("done"))["events"]))
        with RawServer(Script(answers)) as server:
            subprocess.run([sys.executable, "-m", "midstream", "--isolation", "none", "--continue", "-p", "go",
                            "--context-window", "10000000", "--max-requests", str(requests + 5)],
                           cwd=workspace, env=env | {"ANTHROPIC_BASE_URL": server.url}, capture_output=True,
                           check=True, timeout=1200)
        return _gaps(server)[:requests]


def _bare_client(size: int, requests: int) -> list[float]:
    """The floor: the same first body posted again and again on one connection, nothing else done."""
    body = json.dumps({"model": "m", "max_tokens": 100, "messages": _history(size) + [
        {"role": "user", "content": [{"type": "text", "text": "go"}]}]}).encode()
    answer = reply_bytes("anthropic", reply(Text("ok"))["events"])
    with RawServer(Script([], then=lambda request, connection: connection.send(answer))) as server, \
            httpx2.Client(base_url=server.url) as client:
        for _ in range(requests):
            with client.stream("POST", "/v1/messages", content=body,
                               headers={"content-type": "application/json"}) as response:
                for _ in response.iter_bytes():
                    pass
        return _gaps(server)


def _row(what: str, gaps: list[float]) -> list[object]:
    ordered = sorted(gaps)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return [what, statistics.median(gaps[:20]), statistics.median(gaps[-20:]), statistics.median(gaps), p99]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    header = ["history, calls per reply", "first 20 ms", "last 20 ms", "median ms", "p99 ms"]
    rows = []
    for name, size in SIZES.items():
        rows.append(_row(f"bare client, {name}", _bare_client(size, min(args.requests, 50))))
        for calls in (1, 5):
            rows.append(_row(f"midstream -p, {name}, {calls}", _through_the_program(size, calls, args.requests)))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table(f"End of one answer -> next request at the server, {args.requests} requests, loopback, one connection "
          f"(load average {load} on {os.cpu_count()} cores)", header, rows)


if __name__ == "__main__":
    main()
