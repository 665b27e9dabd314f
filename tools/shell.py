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

from midstream.sandbox.changes import changed_since, describe_changes
from midstream.sandbox.isolation import isolate
from midstream.sandbox.policy import classify
from midstream.tools.registry import Access, ToolContext, ToolError, tool

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


ON_TIMEOUT = (signal.SIGTERM, signal.SIGKILL)
ON_INTERRUPT = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)  # what Ctrl-C in a shell would do first


def _kill_group(process: subprocess.Popen[bytes], signals: tuple[signal.Signals, ...] = ON_TIMEOUT,
                grace: float = KILL_GRACE) -> None:
    """Send each signal to the whole group in turn, ``grace`` seconds apart, until it is gone."""
    for sig in signals:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; what else is left in the group gets the next, harder signal.


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
    started_ns = time.time_ns()
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
            _kill_group(process, ON_INTERRUPT, grace=1.0)
            ending = _interrupted(ctx, time.monotonic() - started, started_ns, process)
            break
        if time.monotonic() - started > timeout:
            _kill_group(process)
            ending = f"[timed out after {timeout} s; process group terminated]"
            break
    reader.join(0.5)
    if reader.is_alive():
        # The shell is gone but something it started in the background still holds the output open.
        _kill_group(process, ON_TIMEOUT, grace=0.5)
        reader.join(2.0)
        if reader.is_alive():  # e.g. `setsid -f`: it left the process group, so the signals missed it
            ending = ending or ("[background processes the command started are still running: they left its "
                                "process group, so they could not be stopped, and still hold its output open]")
        else:
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


def _interrupted(ctx: ToolContext, seconds: float, started_ns: int, process: subprocess.Popen[bytes]) -> str:
    """The facts of an interrupted command, worded so the model does not simply run it again."""
    process.poll()
    changed = describe_changes(changed_since(ctx.workspace, started_ns))
    return (f"[Interrupted by the person after {seconds:.1f} s: the command was stopped (SIGINT, then "
            f"SIGTERM and SIGKILL as needed) and may have done part of its work. Files changed in the "
            f"workspace since it started: {changed}. Do not run it again unless the person asks you to.]")


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
    process.stdout.close()  # here, when a process that escaped the group lets go of it at last
