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
from midstream.sandbox.undo import TurnUndo
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
from midstream.tools.registry import (
    NOT_STARTED,
    Access,
    Decision,
    Facts,
    PlannedCall,
    ToolContext,
    ToolRegistry,
    ToolResult,
    workspace_key,
)
from midstream.tools.scheduler import ScheduledCall, Scheduler
from midstream.tools.tracing import LoopTrace

__all__ = ["NOT_STARTED", "Attempt", "Calls", "Dispatched", "worded"]

log = logging.getLogger("midstream.calls")

NOT_RUN = ToolResult(NOT_STARTED, is_error=True, facts=Facts(ended="not_run"))
_NOT_RUN = Decision(refusal=NOT_STARTED, ended="not_run")

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
    discard: threading.Event = field(default_factory=threading.Event)  # it broke off: pending change sets go

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
        self.undo: TurnUndo | None = None  # this conversation's: set by the agent
        self.transcript: Transcript | None = None
        self.hooks: LoopHooks | None = None  # PreToolUse and PostToolUse (tools/hooks/): set by the agent
        self.trace: LoopTrace | None = None  # the call's span is current while it runs: set by the agent
        # Results of calls from rolled-back attempts that an identical call in the retry may reuse.
        self._reusable: dict[str, list[ToolResult]] = defaultdict(list)
        self._live: dict[str, tuple[PlannedCall, ToolContext]] = {}  # dispatched, not yet finished, in order
        self._not_run: set[str] = set()  # cancelled before they started, not yet announced
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
        planned = tool.plan(self.workspace, call.id, call.input)
        if (earlier := self._reusable.get(_call_key(call.name, call.input))) and not _stale(planned, attempt):
            attempt.ran[call.id] = result = earlier.pop(0)  # reusable again if this attempt breaks off too
            attempt.reused.add(call.id)
            attempt.planned[call.id] = planned
            return self._finished_now(call, result, reused=True)
        attempt.planned[call.id] = planned
        crash_record = CrashRecord(self.transcript, call.id, f"{tool.name} {_shown(call.input)}".strip(),
                                   self.workspace)

        def before_write(path: Path) -> None:
            attempt.journal.record(path)
            attempt.wrote.setdefault(call.id, []).append(path)
            crash_record.file_changed(path)
            if self.undo is not None:
                self.undo.before_write(path)  # the turn's undo record keeps the original

        # The context exists from dispatch on, so a stop reaches a call still waiting for its turn or
        # for a free worker: the scheduler may have handed it to the pool already, to start later.
        ctx = ToolContext(self.workspace, report_progress=lambda line: self.renderer.show(ToolProgress(call.id, line)),
                          before_write=before_write, discard=attempt.discard, undo=self.undo)
        with self._lock:
            self._live[call.id] = (planned, ctx)
        return self.scheduler.submit(ScheduledCall(call.id, planned.judgement.access,
                                                   lambda: self._run(planned, ctx, crash_record, attempt)))

    def _run(self, call: PlannedCall, ctx: ToolContext, crash_record: CrashRecord, attempt: Attempt) -> ToolResult:
        started = time.monotonic()
        try:
            # PreToolUse at dispatch, in this call's worker: side by side with other calls and their hooks.
            writable = self.gate.mode != "read-only"  # what a project hook may write in the workspace
            hooked = self.hooks.pre_tool(call.tool.name, call.input, call.id, cancelled=ctx.cancelled,
                                         writable=writable) if self.hooks and not ctx.cancelled.is_set() else None
            if ctx.cancelled.is_set():  # stopped while it waited for a free worker (or its hook): it never starts
                decision = ctx.decision = _NOT_RUN
            elif hooked is not None and hooked.refusal is not None:
                decision = ctx.decision = Decision(refusal=hooked.refusal.content,
                                                   ended="interrupted" if hooked.verdict.stopped else "refused")
            else:
                decision = ctx.decision = self.gate.decide(
                    call, ctx, hook=hooked.verdict.permission if hooked else None, why=hooked.reason if hooked else "")
            if decision.refusal is None and ctx.cancelled.is_set():
                decision = _NOT_RUN  # stopped while the gate let it through: it has not started, so it never will
            if decision.refusal is not None:
                result = ToolResult(decision.refusal, is_error=True, facts=Facts(ended=decision.ended))
            else:  # running only now: a grace window or a question comes first, on screen too
                self.renderer.show(ToolRunning(call.id, call.tool.name, call.status))
                # A command's text is only read by a speed bump (sed 'w f' reads as read-only): unless the
                # kernel binds the workspace read-only for it, it may write, so /undo must be able to return.
                writes = call.judgement.access.writes or (call.tool.name in SHELL_TOOLS and decision.writable)
                if writes and self.undo is not None and decision.review is None:
                    self.undo.before_call()  # without overlays: a snapshot /undo can return to
                crash_record.started()
                with self.trace.running(call.id) if self.trace is not None else nullcontext():
                    result = attempt.ran[call.id] = call.tool.run(ctx, call.input)
                for path in attempt.wrote.get(call.id, ()):
                    attempt.journal.seal(path)
                    if self.undo is not None:
                        self.undo.after_write(path)
                crash_record.finished(result.is_error)
                if self.hooks:  # PostToolUse: what a hook writes is part of the turn (a snapshot comes first)
                    result = self.hooks.post_tool(call.tool.name, call.input, result, call.id, cancelled=ctx.cancelled,
                                                  writable=writable, pre=hooked)
        except BaseException:  # the scheduler answers it with an internal error; the calls after it go on
            with self._lock:
                self._live.pop(call.id, None)
            self._announce_not_run()
            raise
        self.renderer.show(ToolFinished(call.id, call.tool.name, result, time.monotonic() - started,
                                        status=call.status, done=call.done))
        with self._lock:
            self._live.pop(call.id, None)
        self._announce_not_run()
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
        with self._lock:
            live = dict(self._live)
        for _, ctx in live.values():  # first: a call the pool is about to start sees it and does not run
            ctx.stop(kill=kill)
        cancelled = self.scheduler.cancel_waiting(NOT_RUN)
        with self._lock:
            self._not_run.update(cancelled)
        self._announce_not_run()

    def _announce_not_run(self) -> None:
        """Tell the renderers (and json output) of calls cancelled before they started, in block order:
        each once every call dispatched before it has finished."""
        with self._lock:
            due = []
            for call_id, (planned, _) in list(self._live.items()):
                if call_id not in self._not_run:
                    break
                del self._live[call_id]
                self._not_run.discard(call_id)
                due.append(planned)
        for planned in due:
            self.renderer.show(ToolFinished(planned.id, planned.tool.name, NOT_RUN, 0.0, status=planned.status,
                                            done=planned.done))

    def discard_pending(self) -> None:
        """Every running call's countdown or question ends now, discarding its change set (SIGTERM, exit)."""
        with self._lock:
            live = [ctx for _, ctx in self._live.values()]
        for ctx in live:
            ctx.discard.set()

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
        root = self.workspace.resolve()
        undone = Access.writing(*(workspace_key(root, str(p)) for p in restored))
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
            planned = attempt.planned.get(call.id) or tool.plan(self.workspace, call.id, call.input)  # reused
            # A read of what was just restored saw a write that is gone: the retry reads again.
            if planned.judgement.access.writes or not undone.conflicts_with(planned.judgement.access):
                self._reusable[_call_key(call.name, call.input)].append(result)
            if tool.journaled:
                continue  # its write stays on disk: a command built on it
            if planned.judgement.access.writes:
                commands.append(str(call.input.get("command", call.name)))
            else:
                discarded += 1
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


def _stale(planned: PlannedCall, attempt: Attempt) -> bool:
    """A read that comes after a write this attempt makes anew: an earlier attempt's result would be
    stale. (A command's result is always reused: it must never run twice.)"""
    access = planned.judgement.access
    return not access.writes and any(
        earlier.judgement.access.writes and earlier.judgement.access.conflicts_with(access)
        for call_id, earlier in attempt.planned.items() if call_id not in attempt.reused)


def _shown(args: dict[str, Any]) -> str:
    return str(args.get("command") or args.get("path") or "")
