"""The bash tool: one command in the workspace, in its own process session, output streamed and capped.

stderr is merged into stdout; each line is reported while the command runs (for the status line);
the whole process group is terminated, then killed, on timeout or interrupt; the output kept is the
head and the tail with the number of bytes left out, so a command printing 50 MB costs a few KB of
memory. The command runs in the sandbox (sandbox/isolation.py) with an allowlisted environment, so
the model service's keys never reach it; when it fails for lack of the network or because ``.git`` is
read-only there, the result says why and what to do.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midstream.sandbox.changes import changed_since, describe_changes
from midstream.sandbox.isolation import command_environment, sandboxed
from midstream.sandbox.overlay import MOUNT_FAILED
from midstream.sandbox.policy import classify
from midstream.sandbox.spare import make_spare, take_spare
from midstream.sandbox.transaction import Transaction
from midstream.tools.registry import (
    Access,
    Ending,
    Facts,
    Judgement,
    Output,
    ToolContext,
    ToolError,
    Wording,
    tool,
)

__all__ = ["CappedOutput", "bash"]

_log = logging.getLogger("midstream.shell")

DEFAULT_TIMEOUT = 120
MAX_TIMEOUT = 600
HEAD_BYTES = 16 * 1024
TAIL_BYTES = 16 * 1024
KILL_GRACE = 2.0


_NO_NETWORK = re.compile(
    rb"Could not resolve host|Temporary failure in name resolution|Name or service not known|"
    rb"Network is unreachable|getaddrinfo failed|No address associated with hostname|"
    rb"nodename nor servname|ENETUNREACH|EAI_AGAIN|Failed to establish a new connection|Connection refused",
)
_READ_ONLY = re.compile(rb"Read-only file system|EROFS")


def _explain(output: CappedOutput, network: bool, writable: bool, sandboxed_run: bool) -> str:
    """Why a sandboxed command failed, when it is the sandbox's doing, worded so the model can act."""
    if not sandboxed_run:
        return ""
    seen = bytes(output.head + output.tail)
    notes = []
    if not network and _NO_NETWORK.search(seen):
        notes.append("[the sandbox has no network access: this command runs without it. Do not retry; "
                     "if it needs the network, tell the person (they can start midstream with --network)]")
    refused = [line for line in seen.splitlines() if _READ_ONLY.search(line)]
    if refused and not writable:
        notes.append("[the workspace was bound read-only for this command (read-only mode, or a command ask "
                     "mode ran without asking): nothing can be written. Tell the person what you would change "
                     "instead]")
    elif any(re.search(rb"\.git|\.midstream|index\.lock", line) for line in refused):
        notes.append("[.git, .gitmodules and .midstream are read-only inside the sandbox, so git commands "
                     "that write (commit, checkout, stash, merge, rebase, config ...) cannot run here. "
                     "Do not work around it: tell the person which git command to run]")
    elif refused:
        notes.append("[inside the sandbox only the workspace and a private /tmp are writable (not your home "
                     "directory or the system): write caches and output inside the workspace or /tmp, or tell "
                     "the person what needs installing]")
    return "\n".join(notes)


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


def _judge(workspace: Path, args: dict[str, Any]) -> Judgement:
    """The command read once: whether it may run beside other calls, and whether it is destructive."""
    judged = classify(str(args.get("command", "")), workspace)
    return Judgement(Access.whole_workspace(read_only=judged.read_only), judged.destructive, judged.reasons,
                     judged.findings)


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
    wording=Wording("Running", "Ran", target="command", shown=lambda command: f"`{_short(command)}`"),
    judge=_judge,
    params={
        "command": "The shell command (bash syntax), run in the workspace root.",
        "timeout": f"Seconds before the command is stopped (default {DEFAULT_TIMEOUT}, at most {MAX_TIMEOUT}).",
    },
)
def bash(ctx: ToolContext, command: str, timeout: int = DEFAULT_TIMEOUT) -> Output:
    """Run a shell command in the workspace and return its output (stdout and stderr merged) and exit status."""
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise ToolError(f"timeout must be between 1 and {MAX_TIMEOUT} seconds.")
    decision = ctx.decision
    writable, network = decision.writable, decision.network
    shell = ["bash", "-f", "+B"] if decision.literal else ["bash"]  # see permissions.Gate._command
    if decision.review is not None and ctx.undo is not None and ctx.undo.record is not None:
        return _transacted(ctx, [*shell, "-c", command], command, timeout, network)
    with sandboxed([*shell, "-c", command], ctx.workspace, decision.isolation, writable=writable,
                   network=network) as run:
        argv, fds = run
        output = CappedOutput()
        ending, status = _run(ctx, argv, fds, output, timeout)
        if limit := run.verdict():  # a process or memory limit ended it: say which
            ending = _Ending(limit, "failed")
    text = output.text().rstrip("\n")
    result = f"{text}\n" if text else ""
    result += ending.text + "\n" if ending.text else ""
    if status != 0 and (why := _explain(output, network, writable, argv[0] != "bash")):
        result += why + "\n"
    result += f"[exit status {status}]"
    facts = Facts(ended=ending.ended if ending.text else "ran" if status == 0 else "failed", exit_status=status,
                  detail=_detail(output))
    if ending.text or status != 0:
        raise ToolError(result, facts)
    return Output(result, facts)


def _transacted(ctx: ToolContext, argv: list[str], command: str, timeout: int, network: bool) -> Output:
    """Run in an overlay of the workspace (sandbox/transaction.py); its change set is then reviewed by the
    gate's decision, and applied or discarded. Nothing of it reaches the workspace before that."""
    undo = ctx.undo
    spare = take_spare(ctx.workspace, network=network) if argv[:2] == ["bash", "-c"] else None
    with Transaction.begin(ctx.workspace, layer=spare.layer if spare else None) as tx:
        output = CappedOutput()
        if spare is not None:  # set up ahead of time: handing the command over is one write
            ending, status = _run(ctx, [], (), output, timeout, interrupted=_discarded,
                                  launch=lambda: spare.hand_over(command))
        else:
            with sandboxed(argv, ctx.workspace, "bwrap", writable=True, network=network) as (sandbox, fds):
                ending, status = _run(ctx, tx.wrap(sandbox), fds, output, timeout, interrupted=_discarded)
        stopped = ctx.cancelled.is_set()
        changes = tx.changes(None if stopped else undo.git)  # git is asked only to decide
        applied, note = "", ""
        if stopped:
            if not changes.empty:
                note = (f"[ran in isolation; stopped by the person, so its changes ({changes.summary()}) were "
                        "discarded: nothing reached the workspace]")
        else:
            review = ctx.decision.review
            assert review is not None  # bash() comes here only with one
            verdict = review(changes)
            note = verdict.note
            if verdict.apply:
                done = tx.apply(undo.record, source=command)
                applied = changes.summary()
                note = "\n".join([f"[applied to the workspace: {applied}]", *done.lines()])
    text = output.text().rstrip("\n")
    result = f"{text}\n" if text else ""
    result += ending.text + "\n" if ending.text else ""
    if status == MOUNT_FAILED and not text.strip():
        result += "[the copy-on-write view of the workspace could not be set up; the command did not run]\n"
    elif status != 0 and (why := _explain(output, network, True, True)):
        result += why + "\n"
    result += f"[exit status {status}]" + (f"\n{note}" if note else "")
    try:
        make_spare(ctx.workspace, tx.store, network=network)  # the next command's sandbox, ready before it comes
    except (OSError, subprocess.SubprocessError) as error:
        _log.warning("no spare sandbox: %s", error)
    discarded = not changes.empty and not applied
    ended: Ending = ending.ended if ending.text else "discarded" if discarded else "ran" if status == 0 else "failed"
    facts = Facts(ended=ended, exit_status=status, applied=applied,
                  detail=note.strip("[]") if discarded and not ending.text else _detail(output))
    if ending.text or status != 0 or discarded:  # what it did did not happen: never a plain success
        raise ToolError(result, facts)
    return Output(result, facts)


def _discarded(ctx: ToolContext, seconds: float, started_ns: int, process: subprocess.Popen[bytes]) -> str:
    return (f"[Interrupted by the person after {seconds:.1f} s: the command was stopped (SIGINT, then SIGTERM and "
            "SIGKILL as needed). It ran in isolation, so whatever part of its work it did was discarded. Do not "
            "run it again unless the person asks you to.]")


_TEST_COUNTS = re.compile(rb"\d+ failed(?:, \d+ passed)?")


def _detail(output: CappedOutput) -> str:
    """The line worth showing beside a command's outcome: a test run's counts, else its last line."""
    seen = bytes(output.head + output.tail)
    if counts := _TEST_COUNTS.search(seen):
        return counts.group(0).decode()
    last = next((line for line in reversed(seen.splitlines()) if line.strip()), b"")
    return last.decode("utf-8", "replace")[-200:]


@dataclass(frozen=True)
class _Ending:
    """How a command ended when it did not simply exit: the note for the model, and the fact."""

    text: str = ""
    ended: Ending = "ran"


def _run(ctx: ToolContext, argv: list[str], fds: tuple[int, ...], output: CappedOutput,
         timeout: int, interrupted: Any = None,
         launch: Callable[[], subprocess.Popen[bytes]] | None = None) -> tuple[_Ending, int | None]:
    """Run ``argv`` (or what ``launch`` starts) to its end, a timeout or an interrupt; return (how it ended,
    exit status)."""
    started = time.monotonic()
    started_ns = time.time_ns()
    process = launch() if launch is not None else subprocess.Popen(
        argv, cwd=ctx.workspace, env=command_environment(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=fds,
    )
    ctx.on_kill(lambda: _kill_now(process))  # the second Ctrl-C ends the whole group at once
    reader = threading.Thread(target=_pump, args=(process, output, ctx), daemon=True)
    reader.start()
    ending = _Ending()
    exited = threading.Event()  # set the moment the process ends (Popen.wait(timeout) polls with growing sleeps)

    def wait_for_exit() -> None:
        process.wait()
        exited.set()

    threading.Thread(target=wait_for_exit, daemon=True).start()
    while not exited.wait(0.05):
        if ctx.cancelled.is_set():
            _kill_group(process, ON_INTERRUPT, grace=1.0)
            said = (interrupted or _interrupted)(ctx, time.monotonic() - started, started_ns, process)
            ending = _Ending(said, "interrupted")
            break
        if time.monotonic() - started > timeout:
            _kill_group(process)
            ending = _Ending(f"[timed out after {timeout} s; process group terminated]", "timed_out")
            break
    else:
        if ctx.cancelled.is_set() and (process.returncode or 0) < 0:  # killed outright (a second Ctrl-C)
            ending = _Ending(_interrupted(ctx, time.monotonic() - started, started_ns, process), "interrupted")
    reader.join(0.5)
    if reader.is_alive():
        # The shell is gone but something it started in the background still holds the output open.
        _kill_group(process, ON_TIMEOUT, grace=0.5)
        reader.join(2.0)
        if reader.is_alive():  # e.g. `setsid -f`: it left the process group, so the signals missed it
            ending = ending if ending.text else _Ending(
                "[background processes the command started are still running: they left its process group, so "
                "they could not be stopped, and still hold its output open]", "failed")
        else:
            ending = ending if ending.text else _Ending(
                "[background processes still running after the command ended were stopped]", "failed")
    if not reader.is_alive():
        assert process.stdout is not None
        process.stdout.close()
    return ending, process.returncode


def _kill_now(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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
