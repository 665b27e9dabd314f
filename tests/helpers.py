"""What the test files share: the program's environment, a recording renderer, waiting, test tools, runners.

Fixtures stay in conftest.py; everything a test module imports comes from here.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pexpect
import pyte
from midstream.tools.conversation.transcript import state_dir
from midstream.tools.events import Event, Quiet
from midstream.tools.registry import Access, ToolContext, ToolError, Wording, tool
from midstream.tools.testing.scripted_server import ScriptedServer
from midstream.tools.wire.assembler import TurnAssembler
from midstream.tools.wire.providers import client_for

# A system prompt long enough to be worth caching.
LONG_SYSTEM = "\n".join(f"Rule {i}: keep the code base tidy, tested and easy to read for the next person."
                        for i in range(300))  # ~6,000 tokens at four characters a token


def program_env(**extra: str) -> dict[str, str]:
    """Our environment without any ANTHROPIC_* or OPENAI_* setting (no real model service), plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_"))} | extra


class RecordingRenderer(Quiet):
    """Keeps every event (and the rest of the Renderer protocol as a renderer without a screen does)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def show(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


def recording_tool(log: list[str]):
    """A tool that writes start:/end: lines into ``log`` and can wait for another call to start."""

    def access(workspace: Path, args: dict[str, Any]) -> Access:
        if args.get("writes"):
            return Access.writing(args["writes"])
        return Access.reading(args.get("reads") or args.get("label", "?"))

    @tool(wording=Wording("Recording", "Recorded", target="label"), access=access)
    def record(
        ctx: ToolContext,
        label: str,
        reads: str = "",
        writes: str = "",
        wait_for: str = "",
        wait_seconds: float = 5.0,
        fail: bool = False,
    ) -> str:
        """Record this call's start and end in the test's order log."""
        log.append(f"start:{label}")
        if wait_for:
            wait_until(lambda: f"start:{wait_for}" in log, wait_seconds)
        log.append(f"end:{label}")
        if fail:
            raise ToolError(f"{label} failed on purpose")
        return f"recorded {label}"

    return record


def call(tool, workspace, **args):
    """Run one tool directly in ``workspace`` with ``args``."""
    return tool.run(ToolContext(workspace), args)


def tool_results(request: dict) -> list[dict]:
    """The tool_result blocks of the last user message of a recorded request."""
    last = request["body"]["messages"][-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if b["type"] == "tool_result"]


def reply_committed() -> bool:
    """The reply with the tool call is on disk (its command may start before that)."""
    return any('"role": "assistant"' in p.read_text() for p in (state_dir() / "sessions").glob("*/*.jsonl"))


def drop_after_block(scripted: dict, index: int) -> dict:
    """Drop the connection right after content_block_stop of block ``index``."""
    events = scripted["events"]
    stop = next(i for i, e in enumerate(events) if e["type"] == "content_block_stop" and e["index"] == index)
    return scripted | {"drop_after": stop + 1}


def assemble_over(provider: str, chunks: list[bytes], base_url: str = "http://model.test") -> TurnAssembler:
    """The turn ``provider``'s client assembles from SSE ``chunks`` served by a mock transport."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))

    client = client_for(provider, base_url=base_url, api_key="k", transport=httpx2.MockTransport(handler))
    assembler = TurnAssembler()
    with client.stream({"model": "m", "messages": []}) as events:
        for event in events:
            assembler.feed(event)
    client.close()
    return assembler


def chat_agent(make_agent, server: ScriptedServer, **overrides):
    """An agent from the ``make_agent`` fixture that speaks Chat Completions to ``server``."""
    return make_agent(server, provider="openai", base_url=server.url + "/v1", model="qwen2.5:3b", **overrides)


def midstream(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None, stdin: str | None = None,
              script: bool = False) -> subprocess.CompletedProcess:
    """Run the program to its end (``python -m midstream``, or the installed script) and capture its output."""
    command = [str(Path(sys.executable).parent / "midstream")] if script else [sys.executable, "-m", "midstream"]
    feed: dict[str, Any] = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(command + args, cwd=cwd, env=program_env(**(env_extra or {})), capture_output=True,
                          text=True, timeout=60, **feed)


def spawn(server: ScriptedServer, workspace: Path, *args: str, mode: str | None = None, grace: str | None = None,
          dimensions: tuple[int, int] = (40, 120), timeout: int = 20) -> pexpect.spawn:
    """The program in a pseudo-terminal against ``server``, without isolation; ``args`` come last and win."""
    options = [*(["--mode", mode] if mode else []), *(["--grace", grace] if grace else [])]
    env = program_env(ANTHROPIC_BASE_URL=server.url, TERM="xterm")
    return pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", *options, *args],
                         cwd=str(workspace), env=env, dimensions=dimensions, encoding="utf-8", timeout=timeout)


def git(workspace: Path, *args: str) -> str:
    """Run git in ``workspace`` as a throwaway identity; its standard output."""
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=workspace, check=True,
                          capture_output=True, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    return done.stdout.decode()


def watch_processes(monkeypatch: Any, started: list[str]) -> None:
    """Note in ``started`` every launch of the program, another interpreter, bubblewrap, pip or a pty."""
    popen_init, forkpty = subprocess.Popen.__init__, os.forkpty

    def noting_popen(self: subprocess.Popen, args: Any, *rest: Any, **options: Any) -> None:
        argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
        first = os.path.basename(os.fsdecode(argv[0])) if argv else ""
        if first in ("midstream", "bwrap", "pip", "pip3") or os.fsdecode(argv[0]) == sys.executable:
            started.append(" ".join(os.fsdecode(a) for a in argv)[:200])
        popen_init(self, args, *rest, **options)

    def noting_forkpty() -> tuple[int, int]:
        started.append("a pseudo-terminal")
        return forkpty()

    monkeypatch.setattr(subprocess.Popen, "__init__", noting_popen)
    monkeypatch.setattr(os, "forkpty", noting_forkpty)


def processes_with(marker: str) -> list[str]:
    """Every process (but pytest) whose command line contains ``marker``, as ``pid: command line``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "pytest" not in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


ROWS = 30  # the pty's height in Terminal


class Terminal:
    """The program in a pty; everything it writes is kept, and replayed into a pyte screen on demand."""

    def __init__(self, server: ScriptedServer, workspace: Path, columns: int, *args: str, **env_extra: str) -> None:
        self.columns = columns
        self.bytes = io.BytesIO()
        env = program_env() | {"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"} | env_extra
        mode = [] if "--mode" in args else ["--mode", "auto"]  # these tests are about the screen, not permissions
        self.child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", *mode, *args],
                                   cwd=str(workspace), env=env, dimensions=(ROWS, columns), timeout=20)
        self.child.logfile_read = self.bytes

    def expect(self, pattern: str | bytes) -> None:
        self.child.expect(pattern.encode() if isinstance(pattern, str) else pattern)

    def prompt(self) -> None:
        """Until the prompt is drawn and listens (bracketed paste on, then its mark)."""
        self.child.expect_exact(b"\x1b[?2004h")
        self.expect("› ")

    def leave(self) -> None:
        """Ctrl-D at the prompt; the program ends with status 0."""
        self.prompt()
        self.child.sendeof()
        self.finish()
        assert self.child.exitstatus == 0, self.child.exitstatus

    def shows(self, text: str, timeout: float = 20) -> list[str]:
        """Read until a row on the screen contains ``text`` (a redraw may write only what changed); the screen."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.screen()
            if any(text in row for row in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never on the screen: {rows}")
            with contextlib.suppress(pexpect.TIMEOUT):
                self.child.read_nonblocking(100_000, timeout=0.1)

    def screen(self) -> list[str]:
        """The rows on the screen now (without the scrollback)."""
        screen = pyte.Screen(self.columns, ROWS)
        pyte.ByteStream(screen).feed(self.bytes.getvalue())
        return [line.rstrip() for line in screen.display]

    def lines(self) -> list[str]:
        """Scrollback then screen, one string per row, trailing blanks dropped."""
        screen = pyte.HistoryScreen(self.columns, ROWS, history=100_000)
        stream = pyte.ByteStream(screen)
        stream.feed(self.bytes.getvalue())
        rows = [_row(line, self.columns) for line in screen.history.top]
        rows += [line.rstrip() for line in screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def finish(self) -> None:
        self.child.expect(pexpect.EOF)
        self.child.close()


def _row(line: dict, columns: int) -> str:
    return "".join(line[x].data for x in range(columns)).rstrip()


def in_order(rows: list[str], wanted: list[str]) -> list[str]:
    """The wanted lines (each a prefix of a whole row) that are missing or out of order."""
    missing, position = [], 0
    for line in wanted:
        found = next((i for i in range(position, len(rows)) if rows[i].startswith(line)), None)
        if found is None:
            missing.append(line)
        else:
            position = found + 1
    return missing


def chat_chunk(delta: object = None, **fields: object) -> dict:
    """A Chat Completions chunk whose one choice carries ``delta``."""
    choice = {"index": 0, "delta": {"content": "x"} if delta is None else delta, "finish_reason": None}
    return {"id": "c", "model": "m", "choices": [choice], **fields}


# The 11 malformed chunk shapes real servers were seen to send (or could): each a retried malformed stream.
CHAT_SHAPES = {
    "delta is a string": chat_chunk("hello"),
    "choices is an object": {"id": "c", "choices": {"index": 0, "delta": {"content": "x"}}},
    "a tool_calls piece is a string": chat_chunk({"tool_calls": ["bash"]}),
    "function is a string": chat_chunk({"tool_calls": [{"index": 0, "id": "a", "function": "bash"}]}),
    "index is a list": chat_chunk({"tool_calls": [{"index": [0], "id": "a", "function": {"name": "bash"}}]}),
    "id is an object": chat_chunk({"tool_calls": [{"index": 0, "id": {"v": 1}, "function": {"name": "bash"}}]}),
    "usage is a string": {"id": "c", "choices": [], "usage": "lots"},
    "a token count is a string": {"id": "c", "choices": [], "usage": {"prompt_tokens": "12", "completion_tokens": 3}},
    "the choice index is a string": {"id": "c", "choices": [{"index": "0", "delta": {"content": "x"}}]},
    "the call index is a string": chat_chunk({"tool_calls": [{"index": "0", "id": "a", "function": {"name": "bash"}}]}),
    "finish_reason is a number": {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": 1}]},
}
