"""One tool call from start to finish: judged once at dispatch, gated, scheduled, run, settled.

The loop hands each finished ``tool_use`` block to ``Calls.dispatch`` the moment it arrives. The
call is judged once (``Tool.plan``: what it touches, how it is worded) into a ``PlannedCall`` that
every later step reads: the scheduler orders by its access, the gate returns a ``Decision`` for it,
the tool runs with that decision in its context, and the renderers get its status and its result's
facts. Nothing downstream parses the command again or reads the prose written for the model.

An attempt (one try of one request) keeps what its calls did, so a reply that breaks off can be
rolled back: file tools' writes are undone from the attempt's journal, and calls that ran and cannot
be undone (commands) or need not be (reads) are remembered, so an identical call in the retry reuses
the result instead of running twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from midstream.sandbox.journal import UndoJournal
from midstream.sandbox.permissions import SHELL_TOOLS, Gate
from midstream.sandbox.snapshots import TurnSnapshots
from midstream.tools.conversation.transcript import CrashRecord, Transcript
from midstream.tools.events import (
    Event,
    Renderer,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolProgress,
    ToolRunning,
    TurnRolledBack,
)
from midstream.tools.hooks.loop import LoopHooks
from midstream.tools.registry import Decision, Facts, PlannedCall, ToolContext, ToolRegistry, ToolResult
from midstream.tools.scheduler import ScheduledCall, Scheduler
from midstream.tools.tracing import LoopTrace

__all__ = ["NOT_STARTED", "Attempt", "Calls", "Dispatched", "worded"]

log = logging.getLogger("midstream.calls")

NOT_STARTED = "Not run: the person interrupted the turn before this call started. Do not retry it unasked."

Dispatched = tuple[ToolCallReady, Future[ToolResult]]


@dataclass
class Attempt:
    """One try of one request: the calls it dispatched, what they changed, what actually ran."""

    journal: UndoJournal = field(default_factory=UndoJournal)
    calls: list[Dispatched] = field(default_factory=list)
    ran: dict[str, ToolResult] = field(default_factory=dict)  # call id -> result, for calls that ran
    wrote: dict[str, list[Path]] = field(default_factory=dict)  # call id -> paths a file tool wrote
    reused: set[str] = field(default_factory=set)  # call ids answered with an earlier attempt's result
    planned: dict[str, PlannedCall] = field(default_factory=dict)  # call id -> its judged record
    started: float = field(default_factory=time.monotonic)

    def futures(self) -> list[Future[ToolResult]]:
        return [future for _, future in self.calls]


def _call_key(name: str, args: dict[str, Any]) -> str:
    return name + "\0" + json.dumps(args, sort_keys=True)


class Calls:
    """Dispatches, runs, stops and settles the calls of one agent; the loop only says when."""

    def __init__(self, workspace: Path, tools: ToolRegistry, scheduler: Scheduler, gate: Gate,
                 renderer: Renderer) -> None:
        self.workspace = workspace
        self.tools = tools
        self.scheduler = scheduler
        self.gate = gate
        self.renderer = renderer
        self.undo: TurnSnapshots | None = None  # this conversation's: set by the agent
        self.transcript: Transcript | None = None
        self.hooks: LoopHooks | None = None  # PreToolUse and PostToolUse (tools/hooks/): set by the agent
        self.trace: LoopTrace | None = None  # the call's span is current while it runs: set by the agent
        # Results of calls from rolled-back attempts that an identical call in the retry may reuse.
        self._reusable: dict[str, list[ToolResult]] = defaultdict(list)
        self._running: dict[str, ToolContext] = {}  # call id -> context, while a call runs
        self._lock = threading.Lock()

    def worded(self, update: Event) -> Event:
        """A stream event about a call, with the call's wording added for the renderers."""
        return worded(self.tools, update)

    def forget_reusable(self) -> None:
        """A committed reply (or a new conversation) ends the chance to reuse older results."""
        self._reusable.clear()

    # -- dispatch ---------------------------------------------------------------------------------

    def dispatch(self, call: ToolCallReady, attempt: Attempt) -> Future[ToolResult]:
        """Hand a finished tool_use block to the scheduler; bad calls get an error result at once."""
        problem = call.error or self.tools.check(call.name, call.input)
        tool = self.tools.get(call.name)
        if problem or tool is None:
            return self._finished_now(call, ToolResult(problem or "unknown tool", is_error=True,
                                                       facts=Facts(ended="refused")))
        if earlier := self._reusable.get(_call_key(call.name, call.input)):
            attempt.ran[call.id] = result = earlier.pop(0)  # reusable again if this attempt breaks off too
            attempt.reused.add(call.id)
            return self._finished_now(call, result, reused=True)
        planned = attempt.planned[call.id] = tool.plan(self.workspace, call.id, call.input)
        return self.scheduler.submit(ScheduledCall(call.id, planned.judgement.access,
                                                   lambda: self._run(planned, attempt)))

    def _run(self, call: PlannedCall, attempt: Attempt) -> ToolResult:
        started = time.monotonic()
        crash_record = CrashRecord(self.transcript, call.id, f"{call.tool.name} {_shown(call.input)}".strip(),
                                   self.workspace)

        def before_write(path: Path) -> None:
            attempt.journal.record(path)
            attempt.wrote.setdefault(call.id, []).append(path)
            crash_record.file_changed(path)

        ctx = ToolContext(self.workspace, report_progress=lambda line: self.renderer.show(ToolProgress(call.id, line)),
                          before_write=before_write)
        with self._lock:
            self._running[call.id] = ctx
        try:
            # PreToolUse at dispatch, in this call's worker: side by side with other calls and their hooks.
            writable = self.gate.mode != "read-only"  # what a project hook may write in the workspace
            hooked = self.hooks.pre_tool(call.tool.name, call.input, call.id, cancelled=ctx.cancelled,
                                         writable=writable) if self.hooks else None
            if hooked is not None and hooked.refusal is not None:
                decision = ctx.decision = Decision(refusal=hooked.refusal.content,
                                                   ended="interrupted" if hooked.verdict.stopped else "refused")
            else:
                decision = ctx.decision = self.gate.decide(
                    call, ctx, hook=hooked.verdict.permission if hooked else None, why=hooked.reason if hooked else "")
            if decision.refusal is not None:
                result = ToolResult(decision.refusal, is_error=True, facts=Facts(ended=decision.ended))
            else:  # running only now: a grace window or a question comes first, on screen too
                self.renderer.show(ToolRunning(call.id, call.tool.name, call.status))
                # A command's text is only read by a speed bump (sed 'w f' reads as read-only): unless the
                # kernel binds the workspace read-only for it, it may write, so /undo must be able to return.
                writes = call.judgement.access.writes or (call.tool.name in SHELL_TOOLS and decision.writable)
                if writes and self.undo is not None:
                    self.undo.before_call()  # a snapshot /undo can return to
                crash_record.started()
                with self.trace.running(call.id) if self.trace is not None else nullcontext():
                    result = attempt.ran[call.id] = call.tool.run(ctx, call.input)
                for path in attempt.wrote.get(call.id, ()):
                    attempt.journal.seal(path)
                crash_record.finished(result.is_error)
                if self.hooks:  # PostToolUse: what a hook writes is part of the turn (a snapshot comes first)
                    result = self.hooks.post_tool(call.tool.name, call.input, result, call.id, cancelled=ctx.cancelled,
                                                  writable=writable, pre=hooked)
        finally:
            with self._lock:
                self._running.pop(call.id, None)
        self.renderer.show(ToolFinished(call.id, call.tool.name, result, time.monotonic() - started,
                                        status=call.status, done=call.done))
        return result

    def _finished_now(self, call: ToolCallReady, result: ToolResult, reused: bool = False) -> Future[ToolResult]:
        future: Future[ToolResult] = Future()
        future.set_result(result)
        tool = self.tools.get(call.name)
        status, done = (tool.wording.status(call.input), tool.wording.done(call.input)) if tool else ("", "")
        self.renderer.show(ToolFinished(call.id, call.name, result, 0.0, reused=reused, status=status, done=done))
        return future

    # -- stopping ---------------------------------------------------------------------------------

    def stop(self, *, kill: bool) -> None:
        """Cancel calls that have not started; ask running ones to stop, or kill them outright."""
        self.scheduler.cancel_waiting(ToolResult(NOT_STARTED, is_error=True, facts=Facts(ended="not_run")))
        with self._lock:
            running = list(self._running.values())
        for ctx in running:
            ctx.stop(kill=kill)

    # -- settling ---------------------------------------------------------------------------------

    @staticmethod
    def results(calls: list[Dispatched]) -> list[dict[str, Any]]:
        """One tool_result per tool_use, in block order, errors flagged."""
        blocks = []
        for call, future in calls:
            result = future.result()
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": result.content}
            if result.is_error:
                block["is_error"] = True
            blocks.append(block)
        return blocks

    def roll_back(self, attempt: Attempt, error: Exception, number: int, attempts: int,
                  retry_in: float | None) -> TurnRolledBack:
        """Nothing of the failed reply reached history; undo its file changes and remember what ran."""
        restored = attempt.journal.rollback()
        kept = set(attempt.journal.kept)  # a command changed them after the file tool: left as they are
        commands, discarded = [], 0
        for call, _ in attempt.calls:
            result = attempt.ran.get(call.id)
            tool = self.tools.get(call.name)
            if result is None or tool is None:
                continue
            stays = call.id in attempt.reused or kept.intersection(attempt.wrote.get(call.id, ()))
            if tool.journaled and not stays:
                continue  # undone above; an identical call in the retry applies it again
            self._reusable[_call_key(call.name, call.input)].append(result)
            if tool.journaled:
                continue  # its write stays on disk: a command built on it
            planned = attempt.planned.get(call.id) or tool.plan(self.workspace, call.id, call.input)  # reused
            if planned.judgement.access.writes:
                commands.append(str(call.input.get("command", call.name)))
            else:
                discarded += 1
        root = self.workspace.resolve()
        event = TurnRolledBack(
            str(error), number, attempts, retry_in, elapsed=time.monotonic() - attempt.started,
            undone=tuple(str(p.relative_to(root)) for p in restored), discarded=discarded,
            commands=tuple(commands), kept=tuple(str(p.relative_to(root)) for p in kept),
        )
        log.warning("rolled back attempt %d: %s; undone=%s commands=%s", number, error, event.undone, commands)
        if self.transcript:
            self.transcript.note("rolled_back", reason=str(error), undone=list(event.undone), commands=commands,
                                 kept=list(event.kept))
        self.renderer.show(event)
        return event


def worded(tools: ToolRegistry, update: Event) -> Event:
    """``update`` with the wording of the call it is about: a started call's status template, a
    complete call's status line. Other events pass as they are."""
    match update:
        case ToolCallStarted(name=name) if (tool := tools.get(name)) is not None:
            return replace(update, template=tool.wording.of({tool.wording.target: "{}"}), target=tool.wording.target)
        case ToolCallReady(name=name, input=args) if (tool := tools.get(name)) is not None:
            return replace(update, status=tool.status(args))
    return update


def _shown(args: dict[str, Any]) -> str:
    return str(args.get("command") or args.get("path") or "")
