"""The bash tool: one command in the workspace, in its own process session, output streamed and capped.

stderr is merged into stdout; each line is reported while the command runs (for the status line);
the whole process group is terminated, then killed, on timeout or interrupt; the output kept is the
head and the tail with the number of bytes left out, so a command printing 50 MB costs a few KB of
memory. The model service's keys never reach the child.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from sandbox.isolation import isolate
from sandbox.policy import classify
from tools.registry import Access, ToolContext, ToolError, tool

__all__ = ["CappedOutput", "bash", "child_environment"]

DEFAULT_TIMEOUT = 120
MAX_TIMEOUT = 600
HEAD_BYTES = 16 * 1024
TAIL_BYTES = 16 * 1024
KILL_GRACE = 2.0
_SECRET_NAMES = re.compile(r"^(ANTHROPIC_|CLAUDE_|OPENAI_API_KEY$|GEMINI_API_KEY$|GOOGLE_API_KEY$|MIDSTREAM_API_KEY$)")


def child_environment() -> dict[str, str]:
    """Our environment minus the model service's credentials, with pagers and prompts turned off."""
    env = {k: v for k, v in os.environ.items() if not _SECRET_NAMES.match(k)}
    env.update(PAGER="cat", GIT_PAGER="cat", GIT_TERMINAL_PROMPT="0", NO_COLOR="1")
    return env


class CappedOutput:
    """Keeps the first and the last bytes of a stream and counts what fell in between."""

    def __init__(self, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> None:
        self._head_limit, self._tail_limit = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self._tail_limit:
                del self.tail[: len(self.tail) - self._tail_limit]

    def text(self) -> str:
        left_out = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", "replace")
        if left_out <= 0:
            return head + self.tail.decode("utf-8", "replace")
        return (f"{head}\n[… {left_out:,} bytes of output left out …]\n"
                f"{self.tail.decode('utf-8', 'replace')}")


def _access(workspace: Path, args: dict[str, Any]) -> Access:
    read_only = classify(str(args.get("command", "")), workspace).read_only
    return Access.whole_workspace(read_only=read_only)


def _destructive(workspace: Path, args: dict[str, Any]) -> bool:
    return classify(str(args.get("command", "")), workspace).destructive


def _short(command: str, width: int = 60) -> str:
    line = " ".join(command.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _kill_group(process: subprocess.Popen[bytes], grace: float = KILL_GRACE) -> None:
    """SIGTERM the whole group, then SIGKILL what is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            # The leader is gone; anything else still in the group gets the next signal too.
        except subprocess.TimeoutExpired:
            continue


@tool(
    status=lambda args: f"Running `{_short(str(args.get('command', '…')))}`",
    access=_access,
    destructive=_destructive,
    params={
        "command": "The shell command (bash syntax), run in the workspace root.",
        "timeout": f"Seconds before the command is stopped (default {DEFAULT_TIMEOUT}, at most {MAX_TIMEOUT}).",
    },
)
def bash(ctx: ToolContext, command: str, timeout: int = DEFAULT_TIMEOUT) -> str:
    """Run a shell command in the workspace and return its output (stdout and stderr merged) and exit status."""
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise ToolError(f"timeout must be between 1 and {MAX_TIMEOUT} seconds.")
    argv = isolate(["bash", "-c", command], ctx.workspace, ctx.extras.get("isolation", "auto"))
    output = CappedOutput()
    started = time.monotonic()
    process = subprocess.Popen(
        argv, cwd=ctx.workspace, env=child_environment(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    ctx.extras["process"] = process  # so an interrupt can reach the group
    reader = threading.Thread(target=_pump, args=(process, output, ctx), daemon=True)
    reader.start()
    ending = ""
    while True:
        try:
            process.wait(0.05)
            break
        except subprocess.TimeoutExpired:
            pass
        if ctx.cancelled.is_set():
            _kill_group(process)
            ending = f"[interrupted after {time.monotonic() - started:.1f} s; process group stopped]"
            break
        if time.monotonic() - started > timeout:
            _kill_group(process)
            ending = f"[timed out after {timeout} s; process group terminated]"
            break
    reader.join(0.5)
    if reader.is_alive():
        # The shell is gone but something it started in the background still holds the output open.
        _kill_group(process, grace=0.5)
        reader.join(2.0)
        ending = ending or "[background processes still running after the command ended were stopped]"
    if not reader.is_alive():
        assert process.stdout is not None
        process.stdout.close()
    status = process.returncode
    text = output.text().rstrip("\n")
    result = f"{text}\n" if text else ""
    result += ending + "\n" if ending else ""
    result += f"[exit status {status}]"
    if ending or status != 0:
        raise ToolError(result)
    return result


def _pump(process: subprocess.Popen[bytes], output: CappedOutput, ctx: ToolContext) -> None:
    """Read raw chunks (never whole lines: one 50 MB line must not sit in memory) and report lines."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    partial = b""
    while chunk := os.read(fd, 65536):
        output.write(chunk)
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()[-512:]
        if lines and lines[-1].strip():
            ctx.report_progress(lines[-1][-200:].decode("utf-8", "replace"))
