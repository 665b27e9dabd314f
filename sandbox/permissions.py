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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midstream.sandbox.allowlist import why_not
from midstream.sandbox.isolation import INSTALL_HINT, probe
from midstream.sandbox.policy import classify, destructive_targets
from midstream.sandbox.remember import command_keys  # what "always" remembers: sandbox/remember.py
from midstream.tools.events import ToolAsking, ToolGrace
from midstream.tools.registry import Tool, ToolContext

__all__ = ["MODES", "Gate", "command_keys"]

MODES = ("read-only", "ask", "auto")
SHELL_TOOLS = frozenset({"bash"})  # tools whose input is a command the sandbox runs


@dataclass
class Gate:
    """Decides, just before a call runs, whether it may run; returns a refusal message or None."""

    mode: str = "auto"
    grace_seconds: float = 3.0
    # Asks the person; returns "yes" | "no" | "always", or "no" once the event is set (Ctrl-C).
    # None: nobody to ask (a non-interactive run).
    confirm: Callable[[str, threading.Event], str] | None = None
    announce: Callable[[ToolGrace | ToolAsking], None] = lambda window: None  # shows the countdown / the change
    # -p without an explicit mode: nobody watches a countdown, so destructive calls are refused.
    refuse_destructive: bool = False
    _always: set[str] = field(default_factory=set)
    _asking: threading.Lock = field(default_factory=threading.Lock)  # one question at a time

    def check(self, tool: Tool, args: dict[str, Any], ctx: ToolContext, call_id: str) -> str | None:
        workspace = ctx.workspace
        writes = bool(tool.access(workspace, args).writes)
        if tool.name in SHELL_TOOLS and self.mode != "auto":
            return self._command(tool, args, ctx, writes, call_id)
        if self.mode == "read-only" and writes:
            return (f"Refused: midstream is in read-only mode, and {tool.status(args)} would change the "
                    "workspace. Only reading and read-only commands are allowed; tell the person what you "
                    "would change instead.")
        if self.mode == "ask" and writes:
            return self._ask(tool, args, ctx, call_id)
        if self.mode != "auto" or not tool.destructive(workspace, args):  # read once: it parses and stats
            return None
        if self.refuse_destructive:
            return (f"Refused: {tool.status(args)} is destructive (it deletes or overwrites what may not be "
                    "restorable), and in this non-interactive run nobody can stop it during a countdown. "
                    "Do the rest without it and say in your answer that it needs the person, or a run with "
                    "--mode auto.")
        return self._grace(tool, args, ctx, call_id) if self.grace_seconds > 0 else None

    def _command(self, tool: Tool, args: dict[str, Any], ctx: ToolContext, writes: bool,
                 call_id: str) -> str | None:
        """read-only and ask modes: how a command runs (workspace bound read-only or writable) and when to ask."""
        confined = ctx.extras.get("isolation", "auto") != "none" and probe().available
        if self.mode == "ask" and writes:
            return self._ask(tool, args, ctx, call_id)  # the person said yes: it runs with a writable workspace
        if confined:
            ctx.extras["writable"] = False  # the kernel refuses every write, whatever the command says
            return None
        problem = why_not(str(args.get("command", "")))
        if problem is None:
            ctx.extras["literal"] = True  # no glob or brace expansion: a file named "-delete" stays a file name
            return None
        if self.mode == "ask":
            return self._ask(tool, args, ctx, call_id)
        return (f"Refused: midstream is in read-only mode and no sandbox can bind the workspace read-only here "
                f"({probe().reason or 'isolation is off'}), so only a strict allowlist of reading programs runs; "
                f"this command is not on it: {problem}. Use read_file, grep, glob and list_dir instead, or tell "
                f"the person that installing bubblewrap ({INSTALL_HINT}) lifts this.")

    def _ask(self, tool: Tool, args: dict[str, Any], ctx: ToolContext, call_id: str) -> str | None:
        command = args.get("command") if isinstance(args.get("command"), str) else None
        destructive = tool.destructive(ctx.workspace, args)
        keys = command_keys(command) if command is not None else frozenset({f"tool:{tool.name}"})
        if not destructive and keys and keys <= self._always:
            return None
        if self.confirm is None:
            return (f"Refused: {tool.status(args)} needs the person's confirmation (ask mode), and nobody can "
                    "answer in this non-interactive run.")
        with self._asking:
            if not ctx.cancelled.is_set():
                self.announce(ToolAsking(call_id, tool.name, dict(args), str(ctx.workspace)))
            answer = "no" if ctx.cancelled.is_set() else self.confirm(f"{tool.status(args)}?", ctx.cancelled)
        if answer == "always":
            if not destructive and keys:  # a destructive form is asked for every time
                self._always |= keys
            return None
        if answer == "yes":
            return None
        return "The person refused this call. Do not retry it; ask them what they want instead."

    def _grace(self, tool: Tool, args: dict[str, Any], ctx: ToolContext, call_id: str) -> str | None:
        command = str(args.get("command", tool.status(args)))
        # What it would destroy; when that cannot be listed ("cannot tell", kill -1 …), why it is destructive.
        targets = tuple(destructive_targets(command, Path(ctx.workspace))) or classify(command, ctx.workspace).reasons
        self.announce(ToolGrace(call_id, command, targets, self.grace_seconds))
        if ctx.cancelled.wait(self.grace_seconds):
            return (f"The person stopped this destructive call during its {self.grace_seconds:g} s grace window; "
                    "nothing was run. Do not retry it; ask them what to do instead.")
        return None


