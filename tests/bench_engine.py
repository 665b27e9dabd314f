"""Engine benchmarks: overlap, dispatch latency, assembly cost, start-up. Prints tables; never fails.

Overlap and assembly are measured on both wires: the Anthropic Messages SSE and OpenAI Chat Completions.

    python tests/bench_engine.py            # everything (the SDK helper at 1 MB takes ~15 s)
    python tests/bench_engine.py --quick    # skip the slowest SDK measurements
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from midstream.agent import Agent, AgentConfig  # noqa: E402
from midstream.tools.events import Event, ToolCallReady, ToolFinished, TurnCommitted  # noqa: E402
from midstream.tools.registry import Access, ToolContext, ToolRegistry, Wording, tool  # noqa: E402
from midstream.tools.testing.scripted_chat import render_chat  # noqa: E402
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply  # noqa: E402
from midstream.tools.wire.assembler import TurnAssembler  # noqa: E402
from midstream.tools.wire.client import ModelClient  # noqa: E402
from midstream.tools.wire.openai import ChunkTranslator  # noqa: E402
from midstream.tools.wire.providers import client_for  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.* helpers
from tests.helpers import program_env  # noqa: E402


def median_ms(runs: int, action: Callable[[], object]) -> float:
    """The median wall time of ``action`` over ``runs`` calls, in milliseconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


class Stamps:
    """A renderer that notes when each event arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []
        self._lock = threading.Lock()

    def show(self, event: Event) -> None:
        with self._lock:
            self.events.append((time.perf_counter(), event))


def _sleep_tool(started: dict[str, float] | None = None):
    @tool(wording=Wording("Sleeping", "Slept", target="label"), access=lambda ws, a: Access.reading(a["label"]))
    def sleep(ctx: ToolContext, label: str, seconds: float = 0.0) -> str:
        """Sleep, then say so."""
        if started is not None:
            started[label] = time.perf_counter()
        time.sleep(seconds)
        return f"slept {label}"

    return sleep


WIRES = {"anthropic": "Messages SSE", "openai": "Chat Completions"}


def _client(url: str, provider: str) -> ModelClient:
    if provider == "openai":
        return client_for("openai", base_url=url + "/v1", api_key="k")
    return client_for("anthropic", base_url=url, api_key="k")


def _agent(server: ScriptedServer, renderer: Any, tools: ToolRegistry, workspace: str,
           provider: str = "anthropic") -> Agent:
    config = AgentConfig(workspace=Path(workspace), base_url=server.url + ("/v1" if provider == "openai" else ""),
                         api_key="k", model="bench", system_prompt="bench", max_tokens=1000, workers=16,
                         provider=provider)
    return Agent(config, tools=tools, renderer=renderer)


# -- overlap ---------------------------------------------------------------------------------------

def _overlap_reply() -> dict[str, Any]:
    return reply(
        Text("Starting A."),
        ToolUse("a", "sleep", {"label": "A", "seconds": 1.0}),
        Text("x" * 50, chunk=1, delay=0.02),  # text streaming for ~1 s
        ToolUse("b", "sleep", {"label": "B", "seconds": 1.0}),
    )


def bench_overlap(workspace: str, runs: int = 3, provider: str = "anthropic") -> None:
    tools = ToolRegistry([_sleep_tool()])
    ours, usual, ideal = [], [], []
    for _ in range(runs):
        stamps = Stamps()
        server = ScriptedServer([_overlap_reply(), reply(Text("done"))])
        with server:
            agent = _agent(server, stamps, tools, workspace, provider)
            t0 = time.perf_counter()
            agent.send("go")
            agent.close()
        stream_end = next(t for t, e in stamps.events if isinstance(e, TurnCommitted))
        tools_done = max(t for t, e in stamps.events if isinstance(e, ToolFinished))
        ready = [t for t, e in stamps.events if isinstance(e, ToolCallReady)]
        ours.append(max(stream_end, tools_done) - t0)
        ideal.append(max(stream_end, *(t + 1.0 for t in ready)) - t0)

        # The usual way: the same bytes, the same tools, run one after another after message_stop.
        server = ScriptedServer([_overlap_reply()])
        with server:
            client = _client(server.url, provider)
            t0 = time.perf_counter()
            assembler = TurnAssembler()
            calls = []
            with client.stream({"model": "bench"}) as events:
                for event in events:
                    calls += [u for u in assembler.feed(event) if isinstance(u, ToolCallReady)]
            for call in calls:
                tools.get(call.name).run(ToolContext(Path(workspace)), call.input)
            usual.append(time.perf_counter() - t0)
            client.close()
    m_ours, m_usual, m_ideal = (statistics.median(x) for x in (ours, usual, ideal))
    table(
        f"Overlap ({WIRES[provider]}): text, tool A (1 s), 1 s of text, tool B (1 s); median of {runs} runs",
        ["strategy", "wall s", "vs ideal"],
        [["ideal (max of stream end, each tool's stop + 1 s)", m_ideal, 1.0],
         ["midstream (dispatch when the call is complete)", m_ours, m_ours / m_ideal],
         ["usual (tools one by one after message_stop)", m_usual, m_usual / m_ideal]],
    )


# -- dispatch latency ----------------------------------------------------------------------------

def bench_dispatch(workspace: str, calls: int = 500) -> None:
    sent: dict[str, float] = {}
    started: dict[str, float] = {}
    blocks = [ToolUse(f"t{i}", "sleep", {"label": f"L{i}"}, delay=0.001) for i in range(calls)]
    scripted = reply(*blocks)
    for event in scripted["events"]:
        if event["type"] == "content_block_stop":
            label = f"L{event['index']}"
            event["_before"] = lambda label=label: sent.__setitem__(label, time.perf_counter())
    server = ScriptedServer([scripted, reply(Text("done"))])
    with server:
        agent = _agent(server, Stamps(), ToolRegistry([_sleep_tool(started)]), workspace)
        agent.send("go")
        agent.close()
    latencies = sorted((started[k] - sent[k]) * 1000 for k in sent)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    table(
        f"Dispatch latency: server writes content_block_stop -> tool function starts ({calls} calls, loopback)",
        ["median ms", "p99 ms", "max ms"],
        [[statistics.median(latencies), p99, latencies[-1]]],
    )


# -- a command's start after its block stop, sandbox and overlay included ------------------------

def _command_starts(workspace: str, command: str, calls: int = 20, spacing: float = 0.15,
                    **config: Any) -> list[float]:
    """ms from the server writing each block's content_block_stop to the command's first instruction."""
    from midstream.tools import builtin_tools

    sent: dict[int, float] = {}
    blocks = [ToolUse(f"c{i}", "bash", {"command": command.replace("N", str(i))}, delay=0.002) for i in range(calls)]
    scripted = reply(*blocks)
    for event in scripted["events"]:
        if event["type"] == "content_block_start":
            event["_delay"] = spacing  # the model writing the next call: the one before has time to run
        if event["type"] == "content_block_stop":
            event["_before"] = lambda i=event["index"]: sent.__setitem__(i, time.time())
    server = ScriptedServer([scripted, reply(Text("done"))])
    with server:
        settings = dict(workspace=Path(workspace), base_url=server.url, api_key="k", model="bench",
                        system_prompt="bench", max_tokens=1000, workers=4, grace_seconds=0, **config)
        agent = Agent(AgentConfig(**settings), tools=ToolRegistry(builtin_tools()), renderer=Stamps())
        agent.send("go")
        agent.close()
    starts = {}
    for block in server.requests[1]["body"]["messages"][-1]["content"]:
        if block.get("type") == "tool_result":
            first = block["content"].split()[0]
            starts[int(block["tool_use_id"][1:])] = float(first.split("=")[-1])
    return [(starts[i] - sent[i]) * 1000 for i in sorted(starts)]


def bench_command_start(workspace: str) -> None:
    """Tool start after its block stop for 20 trivial commands in one reply: sandboxed and overlaid, or not."""
    import subprocess as sp

    os.environ["XDG_STATE_HOME"] = str(Path(workspace) / ".state")  # undo records and layers: not the person's
    Path(workspace, ".gitignore").write_text(".state/\n")
    sp.run(["git", "init", "-q", workspace], check=True)
    Path(workspace, "tracked.txt").write_text("x\n")
    sp.run("git add -A && git -c user.email=b@b -c user.name=b commit -qm b", shell=True, cwd=workspace, check=True)
    reading, writing = "echo $EPOCHREALTIME", "echo $EPOCHREALTIME; echo N >> log.txt"
    rows = []
    for label, command, config in (
        ("unsandboxed (--isolation none), reading", reading, {"isolation": "none"}),
        ("unsandboxed (--isolation none), writing: git snapshots", writing, {"isolation": "none"}),
        ("bwrap, read-only mode (no overlay)", reading, {"mode": "read-only"}),
        ("bwrap + overlay (a transaction), reading", reading, {}),
        ("bwrap + overlay (a transaction), writing: applied", writing, {}),
    ):
        _command_starts(workspace, command, 3, **config)  # warm: probes, caches
        latencies = _command_starts(workspace, command, **config)
        rows.append([label, statistics.median(latencies), sorted(latencies)[-2], max(latencies)])
    table("Tool start after block stop: 20 trivial commands in one reply, 150 ms apart (server's "
          "content_block_stop -> the command's first instruction)",
          ["how commands run", "median ms", "2nd worst ms", "max ms"], rows)


def bench_apply(workspace: str, files: int = 10_000) -> None:
    """A command that rewrites 10,000 files: its run in the overlay, reading, applying and undoing its change set."""
    import shutil
    import subprocess as sp

    from midstream.sandbox.changeset import GitView
    from midstream.sandbox.isolation import command_environment, sandboxed
    from midstream.sandbox.record import UndoRecord
    from midstream.sandbox.transaction import Transaction
    from midstream.sandbox.undo import undo_record

    root = Path(workspace) / "many"
    root.mkdir()
    os.environ["XDG_STATE_HOME"] = str(Path(workspace) / ".state")
    (root / "d").mkdir()
    for i in range(files):
        (root / "d" / f"f{i}").write_text(f"{i}\n")
    command = "python3 -c \"import os\nfor n in os.listdir('d'): open('d/'+n, 'a').write('x')\""
    rows = []
    started = time.perf_counter()
    sp.run(["bash", "-c", command], cwd=root, check=True)
    rows.append(["the command, unsandboxed (baseline)", (time.perf_counter() - started) * 1000])
    record = UndoRecord(Path(workspace) / ".state" / "bench", "bench")
    with Transaction.begin(root) as tx:
        with sandboxed(["bash", "-c", command], root, "bwrap") as (argv, fds):
            started = time.perf_counter()
            sp.run(tx.wrap(argv), cwd=root, env=command_environment(), pass_fds=fds, check=True)
            rows.append(["the command in bwrap + overlay (copy-up of every file)",
                         (time.perf_counter() - started) * 1000])
        started = time.perf_counter()
        changes = tx.changes(GitView(root))
        rows.append([f"reading the change set ({changes.summary()})", (time.perf_counter() - started) * 1000])
        started = time.perf_counter()
        applied = tx.apply(record)
        rows.append([f"applying it ({len(applied.applied):,} paths: link aside, rename in)",
                     (time.perf_counter() - started) * 1000])
    started = time.perf_counter()
    report = undo_record(root, record)
    rows.append([f"undoing it ({len(report.files):,} paths)", (time.perf_counter() - started) * 1000])
    copy = Path(workspace) / "copy"
    started = time.perf_counter()
    shutil.copytree(root / "d", copy)
    rows.append(["for scale: copying the directory (shutil.copytree)", (time.perf_counter() - started) * 1000])
    table(f"A command that rewrites {files:,} files, as a transaction", ["step", "ms"], rows)


# -- assembly cost -----------------------------------------------------------------------------

def _big_tool_reply(size: int) -> dict[str, Any]:
    content = ("def f(x):\n    return x * 2  # é\n" * (size // 30 + 1))[:size]
    return reply(ToolUse("big", "write_file", {"path": "big.py", "content": content}, chunk=20), pings=False)


def _sse(scripted: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in scripted["events"])


def _ours_whole_stack(scripted: dict[str, Any], runs: int = 3, provider: str = "anthropic") -> float:
    """Over loopback from a server in its own process, so it does not share our interpreter lock."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([scripted | {"burst": True}] * runs, f)
    server = subprocess.Popen([sys.executable, "-m", "midstream.tools.testing.scripted_server", f.name], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        client = _client(url, provider)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            assembler = TurnAssembler()
            with client.stream({"model": "bench"}) as events:
                for event in events:
                    assembler.feed(event)
            times.append(time.perf_counter() - t0)
            assert assembler.complete
        client.close()
    finally:
        server.terminate()
        server.wait()
        os.unlink(f.name)
    return statistics.median(times)


def _ours_assembly_only(scripted: dict[str, Any]) -> float:
    events = [json.loads(json.dumps(e)) for e in scripted["events"]]
    t0 = time.perf_counter()
    assembler = TurnAssembler()
    for event in events:
        assembler.feed(event)
    return time.perf_counter() - t0


def _chat_assembly_only(scripted: dict[str, Any]) -> float:
    """Chunk translation plus assembly, from decoded chunks (what the SSE parser hands over)."""
    wire = render_chat(scripted["events"])
    chunks = [json.loads(block[6:]) for block in wire.split(b"\n\n") if block.startswith(b"data: {")]
    t0 = time.perf_counter()
    translator, assembler = ChunkTranslator(), TurnAssembler()
    for chunk in chunks:
        for event in translator.chunk(chunk):
            assembler.feed(event)
    for event in translator.done():
        assembler.feed(event)
    elapsed = time.perf_counter() - t0
    assert assembler.complete and assembler.message()["content"][0]["input"]
    return elapsed


def bench_chat_assembly() -> None:
    rows = []
    for kb in (100, 500, 1000):
        scripted = _big_tool_reply(kb * 1000)
        sse_asm = statistics.median(_ours_assembly_only(scripted) for _ in range(3))
        sse_stack = _ours_whole_stack(scripted)
        chat_asm = statistics.median(_chat_assembly_only(scripted) for _ in range(3))
        chat_stack = _ours_whole_stack(scripted, provider="openai")
        rows.append([f"{kb} KB", sse_asm, sse_stack, chat_asm, chat_stack, chat_stack / sse_stack,
                     chat_stack / kb * 1000])
    table(
        "Assembly on both wires: one tool input streamed in 20-byte pieces (seconds)",
        ["input", "Messages: assembly", "Messages: loopback stack", "Chat: translate+assembly",
         "Chat: loopback stack", "Chat / Messages", "Chat s per MB"],
        rows,
    )


def _sdk(scripted: dict[str, Any], helper: bool) -> float:
    import anthropic
    import httpx2

    body = _sse(scripted)
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    )
    client = anthropic.Anthropic(api_key="k", http_client=httpx2.Client(transport=transport), max_retries=0)
    args = dict(model="claude-sonnet-5-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    t0 = time.perf_counter()
    if helper:
        with client.messages.stream(**args) as stream:
            stream.get_final_message()
    else:
        for _ in client.messages.create(stream=True, **args):
            pass
    return time.perf_counter() - t0


def bench_assembly(quick: bool) -> None:
    rows = []
    for kb in (100, 500, 1000):
        scripted = _big_tool_reply(kb * 1000)
        ours_stack = _ours_whole_stack(scripted)
        ours_asm = statistics.median(_ours_assembly_only(scripted) for _ in range(3))
        raw = _sdk(scripted, helper=False) if not quick or kb <= 100 else float("nan")
        helper = _sdk(scripted, helper=True) if not quick or kb <= 100 else float("nan")
        rows.append([f"{kb} KB", ours_asm, ours_stack, raw, helper, helper / ours_stack])
    table(
        "Assembly: one tool input streamed in 20-byte deltas (seconds)",
        ["input", "our assembly", "ours: loopback HTTP+SSE+assembly", "SDK create(stream=True)",
         "SDK messages.stream()", "helper / ours"],
        rows,
    )


# -- start-up --------------------------------------------------------------------------------------

def _first_request_after_start(env: dict[str, str], workspace: str) -> float:
    server = ScriptedServer([reply(Text("ok"))])
    with server:
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "midstream", "-p", "hi"], cwd=workspace,
                       env=env | {"ANTHROPIC_BASE_URL": server.url}, capture_output=True, check=True)
        return server.requests[0]["time"] - t0


def bench_startup(workspace: str, runs: int = 10) -> None:
    env = program_env()
    cached = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    _first_request_after_start(cached, workspace)  # writes the bytecode caches once
    as_is = [_first_request_after_start(env, workspace) for _ in range(runs)]
    with_pyc = [_first_request_after_start(cached, workspace) for _ in range(runs)]
    repository = Path(workspace) / "repository"  # as a person runs it: git root and status go in the prompt
    repository.mkdir(exist_ok=True)
    for n in range(50):
        (repository / f"f{n}.py").write_text(f"x = {n}\n")
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-C", str(repository)]
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "start"], check=True)
    in_git = [_first_request_after_start(cached, str(repository)) for _ in range(runs)]
    bare = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.monotonic() - t0)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import anthropic"], check=True)
    sdk_import = time.monotonic() - t0
    table(
        f"Start-up: process start -> first request on the wire, -p mode, median of {runs} (load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; the issue measured 0.75 s loaded, 0.16 s quiet; "
        "before start-up work waited for the first request: 0.27 s quiet)",
        ["what", "seconds"],
        [["python -c pass", statistics.median(bare)],
         [f"midstream -p, this environment (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')})",
          statistics.median(as_is)],
         ["midstream -p, bytecode cached (as an installed copy runs)", statistics.median(with_pyc)],
         ["midstream -p, bytecode cached, in a git repository of 50 files", statistics.median(in_git)],
         ["for scale: python -c 'import anthropic' (once)", sdk_import]],
    )


# -- the way out -----------------------------------------------------------------------------------

_OLD_EXIT = "import sys; from midstream.tools.cli.main import main; sys.exit(main())"  # the interpreter's own exit


def _stream_end_to_exit(command: list[str], workspace: str, isolation: str = "none") -> float:
    """Seconds from the last byte of the answer (at a raw loopback server) to the process's exit."""
    from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes

    with RawServer(Script([reply_bytes("anthropic", reply(Text("ok"))["events"])])) as server:
        process = subprocess.Popen([*command, "--isolation", isolation, "-p", "hi"], cwd=workspace,
                                   env=program_env(ANTHROPIC_BASE_URL=server.url), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        process.wait()
        return time.monotonic() - server.requests[0].answered


def _exit_parts(workspace: str) -> dict[str, float]:
    """In this process, the session's own steps after the answer's end: the last commit's fsync, the
    agent's close (stopping tools, joining the scheduler's threads), the exit handlers (the log's writer
    joined after draining). Seconds each."""
    import atexit

    from midstream.agent import Agent as _Agent
    from midstream.tools.cli import main as cli
    from midstream.tools.conversation.transcript import Transcript
    from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes

    spent = {"fsync of the last commit": 0.0, "agent.close (thread joins)": 0.0, "exit handlers (log drain)": 0.0}
    answered: list[float] = []
    originals = (Transcript._write, _Agent.close)

    def write(self: Any, record: dict[str, Any], **how: Any) -> None:
        started = time.monotonic()
        originals[0](self, record, **how)
        if answered:
            spent["fsync of the last commit"] += time.monotonic() - started

    def close(self: Any, *args: Any, **kwargs: Any) -> None:
        started = time.monotonic()
        originals[1](self, *args, **kwargs)
        spent["agent.close (thread joins)"] += time.monotonic() - started

    def answer(request: Any, connection: Any) -> None:
        connection.send(reply_bytes("anthropic", reply(Text("ok"))["events"]))
        answered.append(time.monotonic())

    Transcript._write, _Agent.close = write, close  # type: ignore[method-assign]
    saved = dict(os.environ)
    try:
        with RawServer(Script([answer])) as server:
            os.environ.update(program_env(ANTHROPIC_BASE_URL=server.url))
            cli.main(["--isolation", "none", "--cwd", workspace, "-p", "hi"])
        started = time.monotonic()
        atexit._run_exitfuncs()
        spent["exit handlers (log drain)"] = time.monotonic() - started
    finally:
        Transcript._write, _Agent.close = originals  # type: ignore[method-assign]
        os.environ.clear()
        os.environ.update(saved)
    return spent


def bench_exit(workspace: str, runs: int = 10) -> None:
    now = [_stream_end_to_exit([sys.executable, "-m", "midstream"], workspace) for _ in range(runs)]
    old = [_stream_end_to_exit([sys.executable, "-c", _OLD_EXIT], workspace) for _ in range(runs)]
    sandboxed = [_stream_end_to_exit([sys.executable, "-m", "midstream"], workspace, "auto") for _ in range(runs)]
    parts = subprocess.run([sys.executable, __file__, "--exit-parts", workspace], capture_output=True, text=True,
                           check=True).stdout
    rows = [["midstream -p: the answer's last byte -> process exit (now)", statistics.median(now)],
            ["the same with the sandbox (--isolation auto; probes may still run)", statistics.median(sandboxed)],
            ["the same through the interpreter's own exit (before; the issue measured 0.293)", statistics.median(old)]]
    rows += [[f"  of which, in the session: {name}", float(value)]
             for name, value in json.loads(parts.strip().splitlines()[-1]).items()]
    table(f"The way out: -p, median of {runs} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
          ["what", "seconds"], rows)


def main() -> None:
    if sys.argv[1:2] == ["--exit-parts"]:
        print(json.dumps(_exit_parts(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--commands", action="store_true", help="only the command start and apply benchmarks")
    args = parser.parse_args()
    if args.commands:
        with tempfile.TemporaryDirectory() as workspace:
            bench_command_start(workspace)
        with tempfile.TemporaryDirectory() as workspace:
            bench_apply(workspace)
        return
    with tempfile.TemporaryDirectory() as workspace:
        bench_overlap(workspace)
        bench_overlap(workspace, provider="openai")
        bench_dispatch(workspace)
    with tempfile.TemporaryDirectory() as workspace:
        bench_command_start(workspace)
    with tempfile.TemporaryDirectory() as workspace:
        bench_apply(workspace)
    with tempfile.TemporaryDirectory() as workspace:
        bench_assembly(args.quick)
        bench_chat_assembly()
        bench_startup(workspace)
        bench_exit(workspace)


if __name__ == "__main__":
    main()
