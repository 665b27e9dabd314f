"""Permission modes: what may run without the person, and the grace window for destructive calls.

- ``read-only``: file writes are refused; every shell command runs in the sandbox with the workspace
  bound read-only, so the kernel refuses whatever it tries to write, whatever its text says. Without a
  working sandbox only the strict allowlist of sandbox/allowlist.py runs, and the refusal says so.
- ``ask``: every call that writes waits for the person's yes / no / always-for-this-session. A command
  the classifier reads as read-only runs without asking, but in the read-only sandbox (so a misreading
  fails with EROFS instead of writing); without a sandbox, only an allowlisted one does.
  "always" is narrow: for a file tool it covers that tool; for a shell command it covers the same
  program and subcommand (``npm test``, ``git status``), never all commands and never a destructive one.
- ``auto`` (default): everything runs; a destructive call first shows what it would destroy for a
  short grace window in which the person can stop it (Ctrl-C sets the call's ``cancelled`` event),
  or, with ``refuse_destructive`` (``-p`` without an explicit mode), is refused outright.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from midstream.sandbox.allowlist import why_not
from midstream.sandbox.isolation import INSTALL_HINT, probe
from midstream.sandbox.remember import command_keys  # what "always" remembers: sandbox/remember.py
from midstream.sandbox.review import Stops, outside_effects, review
from midstream.sandbox.targets import describe_targets
from midstream.sandbox.transaction import transactions_unavailable
from midstream.tools.events import ToolAsking, ToolGrace
from midstream.tools.registry import NOT_STARTED, Decision, Ending, PlannedCall, ToolContext

__all__ = ["MODES", "SHELL_TOOLS", "Gate", "command_keys"]

MODES = ("read-only", "ask", "auto")
SHELL_TOOLS = frozenset({"bash"})  # tools whose input is a command the sandbox runs


@dataclass
class Gate:
    """Decides, just before a call runs, whether and how it may run: one ``Decision`` per call."""

    mode: str = "auto"
    grace_seconds: float = 3.0
    # Asks the person; returns "yes" | "no" | "always", or "no" once the event is set (Ctrl-C).
    # None: nobody to ask (a non-interactive run).
    confirm: Callable[[str, threading.Event], str] | None = None
    announce: Callable[[ToolGrace | ToolAsking], None] = lambda window: None  # shows the countdown / the change
    # -p without an explicit mode: nobody watches a countdown, so destructive calls are refused.
    refuse_destructive: bool = False
    isolation: str = "auto"  # how commands run: bwrap, none, or auto (see sandbox/isolation.py)
    network: bool = False  # commands may reach the network
    _always: set[str] = field(default_factory=set)
    _asking: threading.Lock = field(default_factory=threading.Lock)  # one question at a time

    def decide(self, call: PlannedCall, ctx: ToolContext, *, hook: str | None = None, why: str = "") -> Decision:
        """Run as is, run confined, ask, count down, or refuse (``Decision.refusal``).

        ``hook`` is a PreToolUse hook's permissionDecision (Claude Code's meaning): ``ask`` asks the person
        in any mode but read-only, every time; ``allow`` spares the question of ask mode, nothing else.
        """
        runs = Decision(isolation=self.isolation, network=self.network)
        if call.tool.name in SHELL_TOOLS and self.mode != "read-only" and self._transactions(ctx):
            return self._transaction(call, ctx, runs)  # read-only keeps the read-only bind: nothing to apply
        writes = bool(call.judgement.access.writes)
        if hook == "ask" and self.mode != "read-only":
            return self._ask(call, ctx, runs, forced=why or "a PreToolUse hook asks")
        if hook == "allow" and self.mode == "ask":
            return runs
        if call.tool.name in SHELL_TOOLS and self.mode != "auto":
            return self._command(call, ctx, writes, runs)
        if self.mode == "read-only" and writes:
            return _refused(f"Refused: midstream is in read-only mode, and {call.status} would change the "
                            "workspace. Only reading and read-only commands are allowed; tell the person what you "
                            "would change instead.")
        if self.mode == "ask" and writes:
            return self._ask(call, ctx, runs)
        if self.mode != "auto" or not call.judgement.destructive:
            return runs
        if self.refuse_destructive:
            return _refused(f"Refused: {call.status} is destructive (it deletes or overwrites what may not be "
                            "restorable), and in this non-interactive run nobody can stop it during a countdown. "
                            "Do the rest without it and say in your answer that it needs the person, or a run with "
                            "--mode auto.")
        return self._grace(call, ctx, runs) if self.grace_seconds > 0 else runs

    def _transactions(self, ctx: ToolContext) -> bool:
        return not transactions_unavailable(ctx.workspace.resolve(), self.isolation)

    def _transaction(self, call: PlannedCall, ctx: ToolContext, runs: Decision) -> Decision:
        """A command that runs in an overlay: judged by its change set once it ran (sandbox/review.py);
        before it runs, only what no overlay holds back, which needs the network."""
        command = str(call.input.get("command", ""))
        stops = Stops(ctx.cancelled, ctx.discard)
        judged = replace(runs, isolation="bwrap", writable=True, review=lambda changes: review(
            changes, mode=self.mode, command=command, call_id=call.id, stops=stops, announce=self.announce,
            confirm=self.confirm, refuse_destructive=self.refuse_destructive, grace_seconds=self.grace_seconds))
        outside = outside_effects(command) if self.network else ()
        if not outside:
            return judged
        if self.mode == "ask":
            return self._ask_before(call, ctx, outside, judged)
        if self.refuse_destructive:
            return _refused(f"Refused: this command acts beyond the workspace ({'; '.join(outside)}), which no "
                            "sandbox can take back, and in this non-interactive run nobody can stop it during a "
                            "countdown. Do the rest without it and say in your answer that it needs the person, or "
                            "a run with --mode auto.")
        if self.grace_seconds <= 0:
            return judged
        self.announce(ToolGrace(call.id, command, outside, self.grace_seconds))
        if who := stops.wait(self.grace_seconds):
            return _refused(f"This command was stopped by {who} during its {self.grace_seconds:g} s countdown (it "
                            "acts beyond the workspace); nothing was run. Do not retry it; ask what to do instead.",
                            "stopped")
        return judged

    def _ask_before(self, call: PlannedCall, ctx: ToolContext, outside: tuple[str, ...], runs: Decision) -> Decision:
        """Ask mode with the network on: a command that can reach outside is asked before it runs."""
        if self.confirm is None:
            return _refused(f"Refused: this command acts beyond the workspace ({'; '.join(outside)}) and needs the "
                            "person's confirmation (ask mode); nobody can answer in this non-interactive run.")
        with self._asking:
            if not ctx.cancelled.is_set():
                self.announce(ToolAsking(call.id, call.tool.name, dict(call.input), str(ctx.workspace), call.status,
                                         changes=tuple(f"acts beyond the workspace: {why}" for why in outside)))
            answer = "no" if ctx.cancelled.is_set() else self.confirm(f"{call.status}?", ctx.cancelled)
        if answer in ("yes", "always"):
            return runs
        return _refused("The person refused this call. Do not retry it; ask them what they want instead.")

    def _command(self, call: PlannedCall, ctx: ToolContext, writes: bool, runs: Decision) -> Decision:
        """read-only and ask modes: how a command runs (workspace bound read-only or writable) and when to ask."""
        confined = self.isolation != "none" and probe().available
        if self.mode == "ask" and writes:
            return self._ask(call, ctx, runs)  # the person said yes: it runs with a writable workspace
        if confined:
            return replace(runs, writable=False)  # the kernel refuses every write, whatever the command says
        problem = why_not(str(call.input.get("command", "")))
        if problem is None:
            return replace(runs, literal=True)  # no glob or brace expansion: a file named "-delete" stays a name
        if self.mode == "ask":
            return self._ask(call, ctx, runs)
        return _refused(f"Refused: midstream is in read-only mode and no sandbox can bind the workspace read-only "
                        f"here ({probe().reason or 'isolation is off'}), so only a strict allowlist of reading "
                        f"programs runs; this command is not on it: {problem}. Use read_file, grep, glob and "
                        f"list_dir instead, or tell the person that installing bubblewrap ({INSTALL_HINT}) lifts "
                        "this.")

    def _ask(self, call: PlannedCall, ctx: ToolContext, runs: Decision, forced: str = "") -> Decision:
        command = call.input.get("command") if isinstance(call.input.get("command"), str) else None
        destructive = call.judgement.destructive
        keys = command_keys(command) if command is not None else frozenset({f"tool:{call.tool.name}"})
        if not destructive and keys and keys <= self._always and not forced:
            return runs
        if self.confirm is None and forced:
            return _refused(f"Refused: a PreToolUse hook asks the person to confirm {call.status} ({forced}), and "
                            "nobody can answer in this non-interactive run.")
        if self.confirm is None:
            return _refused(f"Refused: {call.status} needs the person's confirmation (ask mode), and nobody can "
                            "answer in this non-interactive run.")
        with self._asking:
            if ctx.cancelled.is_set():  # stopped while another call's question was open: never asked, never run
                return _refused(NOT_STARTED, "not_run")
            self.announce(ToolAsking(call.id, call.tool.name, dict(call.input), str(ctx.workspace), call.status))
            question = f"{call.status}?" + (f" ({forced})" if forced else "")
            answer = "no" if ctx.cancelled.is_set() else self.confirm(question, ctx.cancelled)
        if answer == "always":
            if not destructive and keys:  # a destructive form is asked for every time
                self._always |= keys
            return runs
        if answer == "yes":
            return runs
        return _refused("The person refused this call. Do not retry it; ask them what they want instead.")

    def _grace(self, call: PlannedCall, ctx: ToolContext, runs: Decision) -> Decision:
        command = str(call.input.get("command", call.status))
        # What it would destroy; when that cannot be listed ("cannot tell", kill -1 …), why it is destructive.
        targets = tuple(describe_targets(list(call.judgement.findings), ctx.workspace)) or call.judgement.reasons
        self.announce(ToolGrace(call.id, command, targets, self.grace_seconds))
        if who := Stops(ctx.cancelled, ctx.discard).wait(self.grace_seconds):
            return _refused(f"This destructive call was stopped by {who} during its {self.grace_seconds:g} s grace "
                            "window; nothing was run. Do not retry it; ask what to do instead.", "stopped")
        return runs


def _refused(text: str, ended: Ending = "refused") -> Decision:
    return Decision(refusal=text, ended=ended)


