"""Client overhead per request: from the last tool result to the next request's first byte.

    python tests/bench_overhead.py [--requests 200] [--baseline GIT-REV]

A session that already holds 10 KB, 1 MB or 10 MB of history (pairs of tool calls and 10 KB
results) runs 200 more requests, each answered with one quick tool call. For each request the
client's overhead is the time between the tool call's result (the agent's ToolFinished event) and
the moment the scripted server sees the next request's first bytes (CLOCK_MONOTONIC is shared by
all processes). Server and client run in processes of their own, so neither slows the other
through the GIL. ``--baseline REV`` also runs the client of another revision (a git worktree
checkout is made in a temporary directory). Also counts the TCP connections the server accepted.
Never fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from midstream.tools.registry import Access, ToolContext, ToolRegistry, Wording, tool

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"10 KB": 10_000, "1 MB": 1_000_000, "10 MB": 10_000_000}


def _history(size: int) -> list[dict[str, Any]]:
    """A valid history of about ``size`` bytes: tool calls answered with ~10 KB results."""
    history: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "start"}]}]
    piece = "x" * min(10_000, size)
    number = 0
    while number * len(piece) < size:
        history.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Step {number}."},
            {"type": "tool_use", "id": f"old{number}", "name": "record", "input": {"label": str(number)}}]})
        history.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"old{number}", "content": piece}]})
        number += 1
    history[-1]["content"].append({"type": "text", "text": "go on"})
    return history


def serve(requests: int, out: str) -> None:
    """Serve ``requests`` tool-call replies and a closing one; write the arrival times to ``out``."""
    from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

    replies = [reply(ToolUse(f"t{i}", "record", {"label": str(i)}), pings=False) for i in range(requests)]
    server = ScriptedServer([*replies, reply(Text("done"))], keep_bodies=False)
    with server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the client is done and the parent closes our stdin
        Path(out).write_text(json.dumps({"started": [r["started"] for r in server.requests],
                                         "connections": server.connections}))


def client(url: str, size: int, requests: int, out: str) -> None:
    """Run one user message whose requests the server answers with tool calls; write result times."""
    from midstream.agent import Agent, AgentConfig
    @tool(wording=Wording("Recording", "Recorded", target="label"), access=lambda workspace, args: Access.reading("x"))
    def record(ctx: ToolContext, label: str) -> str:
        """Record a label."""
        return f"recorded {label}"

    finished: list[float] = []
    lock = threading.Lock()

    class Renderer:
        def show(self, event: Any) -> None:
            if type(event).__name__ == "ToolFinished":
                with lock:
                    finished.append(time.monotonic())

    with tempfile.TemporaryDirectory() as workspace:
        config = AgentConfig(workspace=Path(workspace), base_url=url, api_key="k", model="m",
                             system_prompt="You are a benchmark.", tell_date=False, max_requests=requests + 5)
        agent = Agent(config, tools=ToolRegistry([record]), renderer=Renderer(), history=_history(size))
        ended = agent.send("run")
        agent.close()
    Path(out).write_text(json.dumps({"finished": finished, "ok": ended.ok, "message": ended.message}))


def _run(size: int, requests: int, pythonpath: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        server_out, client_out = f"{scratch}/server.json", f"{scratch}/client.json"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(requests), server_out],
                                  stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        try:
            subprocess.run([sys.executable, __file__, "--client", url, str(size), str(requests), client_out],
                           env=env, check=True)
        finally:
            server.communicate(timeout=60)
        served = json.loads(Path(server_out).read_text())
        ran = json.loads(Path(client_out).read_text())
    gaps = [(b - a) * 1000 for a, b in zip(ran["finished"], served["started"][1:], strict=False)]
    return {"gaps": gaps, "connections": served["connections"], "ok": ran["ok"], "message": ran["message"]}


def cpu_breakdown() -> None:
    """In one process, without the network: what preparing one request costs at each size."""
    from midstream.agent import Agent, AgentConfig
    from midstream.tools.conversation.cache import apply_cache_control

    class Quiet:
        def show(self, event: Any) -> None:
            pass

    print("\nPreparing one request in-process (median of 20, after the first): history check, cache "
          "fingerprint, cache_control, body\n")
    print("| history | check | fingerprint | cache_control | body parts | total |")
    print("|---|---|---|---|---|---|")
    for name, size in SIZES.items():
        with tempfile.TemporaryDirectory() as workspace:
            config = AgentConfig(workspace=Path(workspace), base_url="http://127.0.0.1:9", api_key="k", model="m",
                                 system_prompt="x", tell_date=False)
            agent = Agent(config, tools=ToolRegistry([]), renderer=Quiet(), history=_history(size))
            rows = []
            for _ in range(21):
                t0 = time.perf_counter()
                body = agent._request_body()
                t1 = time.perf_counter()
                agent.cache_audit.fingerprint(body)
                t2 = time.perf_counter()
                body = apply_cache_control(body, "5m")
                t3 = time.perf_counter()
                agent.model._encoder.parts(body)
                t4 = time.perf_counter()
                rows.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0))
            agent.close()
        columns = [statistics.median(column) * 1000 for column in zip(*rows[1:], strict=True)]
        print(f"| {name} | " + " | ".join(f"{c:.2f} ms" for c in columns) + " |")


def _package_of(rev: str, into: Path) -> str:
    """A directory whose ``midstream`` package is revision ``rev`` of this repository."""
    tree = into / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    package = into / "pkg" / "midstream"
    package.mkdir(parents=True)
    for name in ("__init__.py", "__main__.py"):
        (package / name).symlink_to(tree / "tools" / "_package" / name)
    for name in ("agent.py", "tools", "sandbox", "prompts"):
        (package / name).symlink_to(tree / name)
    return str(into / "pkg")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--baseline", metavar="REV")
    parser.add_argument("--serve", nargs=2)
    parser.add_argument("--client", nargs=4)
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    if args.serve:
        return serve(int(args.serve[0]), args.serve[1])
    if args.client:
        url, size, requests, out = args.client
        return client(url, int(size), int(requests), out)
    if args.cpu_only:
        return cpu_breakdown()
    runs: list[tuple[str, str | None]] = [("this branch", None)]
    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    if args.baseline:
        runs.append((f"baseline {args.baseline}", _package_of(args.baseline, scratch)))
    print(f"\nClient overhead per request (last tool result -> next request's first byte), "
          f"{args.requests} requests\n")
    print("| client | history | first 20: median | last 20: median | all: p50 | p95 | max | TCP connections |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for label, pythonpath in runs:
            for name, size in SIZES.items():
                result = _run(size, args.requests, pythonpath)
                gaps = result["gaps"]
                if not result["ok"] or len(gaps) < 2:
                    print(f"| {label} | {name} | failed: {result['message']} | | | | | |")
                    continue
                p95 = sorted(gaps)[int(len(gaps) * 0.95)]
                print(f"| {label} | {name} | {statistics.median(gaps[:20]):.1f} ms | "
                      f"{statistics.median(gaps[-20:]):.1f} ms | {statistics.median(gaps):.1f} ms | {p95:.1f} ms | "
                      f"{max(gaps):.1f} ms | {result['connections']} |", flush=True)
        cpu_breakdown()
    finally:
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(scratch / "tree")],
                           capture_output=True)


if __name__ == "__main__":
    main()
