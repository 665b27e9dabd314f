"""midstream: a coding agent whose tools start the moment their call is complete in the stream.

The story of one turn, top to bottom:

1. The person's message is committed to history (Messages API dicts, nothing of ours in them)
   and to the session transcript on disk.
   Before each request, the conversation is fitted to the context window (old tool results
   cleared, or all but the last replies summarised: tools/conversation/compaction.py); a "prompt
   is too long" answer does the same, and the request is tried once more.
2. One streaming request goes out. Each SSE event is fed to the TurnAssembler; what it reports
   goes to the renderer, and each finished ``tool_use`` block goes straight to the Scheduler,
   which starts it while the model keeps streaming.
3. At ``message_stop`` the assistant message is repaired where that is deterministic (empty text
   dropped) and committed through the commit guard, the one validator every committed message
   passes; a reply the API would refuse is a malformed reply. A reply that ends any other way is
   rolled back: history is untouched, files its tools changed are restored from the attempt's
   undo journal (unless a command changed them since), and the request is retried with backoff.
   Calls that completed and cannot be undone (commands), need not be (reads), or whose effect a
   command built on, are remembered until a reply is committed, and an identical call in any
   later retry reuses the result instead of running twice. While a reply streams, the calls it
   starts and the files they change are noted in the transcript, so a crash leaves a record.
4. If the model asked for tools, the loop waits for them, commits one user message with a
   ``tool_result`` per ``tool_use`` in block order, and goes back to 2.
5. Ctrl-C closes the stream, stops running tools and cancels waiting ones, then commits what
   was shown and a result for every ``tool_use``, so the next request is valid. Tool processes
   run in sessions of their own, so the signal reaches only us. It lands at known points only:
   the command line's handler raises ``KeyboardInterrupt`` while the loop is blocked reading the
   stream (``interruptible``) and otherwise just sets ``interrupting``, which every wait polls.
   A second Ctrl-C during the cleanup kills what is left at once and leaves.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midstream.prompts import DATE_NOTE_PREFIX, build_system_blocks, date_note
from midstream.sandbox.journal import UndoJournal
from midstream.sandbox.permissions import SHELL_TOOLS, Gate
from midstream.sandbox.snapshots import TurnSnapshots
from midstream.tools.conversation.cache import CacheAudit, apply_cache_control
from midstream.tools.conversation.compaction import ContextKeeper, ask_for_text, context_window_for
from midstream.tools.conversation.history import CommitGuard, HistoryInvalid, as_blocks, repair_reply
from midstream.tools.conversation.transcript import CrashRecord, Transcript
from midstream.tools.conversation.usage import Usage
from midstream.tools.events import (
    CacheMissed,
    ContextUsed,
    MessageSent,
    Renderer,
    RequestStarted,
    RequestUsage,
    ToolCallReady,
    ToolFinished,
    ToolProgress,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)
from midstream.tools.registry import Access, ToolContext, ToolRegistry, ToolResult
from midstream.tools.scheduler import ScheduledCall, Scheduler
from midstream.tools.wire.assembler import TurnAssembler
from midstream.tools.wire.model import FatalModelError, ModelClient, ModelError, PromptTooLong, RetryableModelError
from midstream.tools.wire.providers import client_for

__all__ = ["Agent", "AgentConfig", "main"]

log = logging.getLogger("midstream.agent")
# Library practice: without a configured handler our warnings must not reach the terminal through
# logging's last resort; the command line sends them to the log file instead (tools/cli/logs.py).
logging.getLogger("midstream").addHandler(logging.NullHandler())

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"


@dataclass
class AgentConfig:
    """Everything that shapes a session; defaults are what a person gets with no flags."""

    workspace: Path = field(default_factory=Path.cwd)
    """The directory the tools act in."""
    provider: str = "anthropic"
    """The wire: anthropic (Messages API) or openai (Chat Completions: OpenAI, Ollama, llama.cpp, vLLM)."""
    model: str = DEFAULT_MODEL
    """Model name sent with every request."""
    base_url: str = DEFAULT_BASE_URL
    """Any Anthropic-compatible Messages API."""
    api_key: str | None = None
    """Sent as x-api-key; may be absent for a local server."""
    max_tokens: int = 16000
    """Output budget of one model request."""
    max_requests: int = 50
    """Model requests allowed for one user message before the loop stops."""
    max_attempts: int = 5
    """Tries of one request (the first plus retries) before giving up."""
    connect_timeout: float = 10.0
    """Seconds to open a connection to the model service."""
    idle_timeout: float = 90.0
    """Seconds without any stream event (pings count) before the reply is treated as dropped."""
    request_timeout: float = 600.0
    """Seconds one model request may take in all, however its bytes trickle in."""
    retry_after_max: float = 300.0
    """Longest wait a service's retry-after may impose; asking for more ends the turn instead."""
    backoff_base: float = 1.0
    """First retry delay in seconds; it doubles each attempt, with jitter."""
    backoff_max: float = 30.0
    """Largest retry delay in seconds, unless the server's retry-after asks for more."""
    workers: int = 8
    """Tool calls that may run at once."""
    mode: str = "auto"
    """Permission mode: read-only, ask or auto (see sandbox/permissions.py)."""
    grace_seconds: float = 3.0
    """How long a destructive call shows its targets before it runs in auto mode; 0 turns it off."""
    refuse_destructive: bool = False
    """Refuse destructive calls in auto mode instead of counting down (-p without an explicit mode)."""
    isolation: str = "auto"
    """Shell isolation: bwrap, none, or auto (bwrap when it works here)."""
    network: bool = False
    """Let shell commands reach the network (the sandbox has none by default)."""
    system_prompt: str = ""
    """The system prompt; empty means built from prompts/ for this workspace and its instruction files."""
    prompt_cache: bool = True
    """Send cache_control breakpoints (see tools/conversation/cache.py) and audit what each reply read."""
    cache_ttl: str = "5m"
    """Prompt cache lifetime: 5m, or 1h (writes cost 2x input instead of 1.25x)."""
    tell_date: bool = True
    """Tell the model today's date in the first message, and again in the first message after it changes."""
    context_window: int | None = None
    """Tokens one request may hold; None: known for Claude models (tools/conversation/compaction.py)."""
    compact: bool = True
    """Clear old tool results and compact the conversation before it outgrows the window (/compact and
    the recovery from a "prompt is too long" answer work either way)."""


@dataclass
class _Attempt:
    """One try of one request: the calls it dispatched, what they changed, what actually ran."""

    journal: UndoJournal = field(default_factory=UndoJournal)
    calls: list[tuple[ToolCallReady, Future[ToolResult]]] = field(default_factory=list)
    ran: dict[str, ToolResult] = field(default_factory=dict)  # call id -> result, for calls that ran
    wrote: dict[str, list[Path]] = field(default_factory=dict)  # call id -> paths a file tool wrote
    reused: set[str] = field(default_factory=set)  # call ids answered with an earlier attempt's result
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Reply:
    """One complete reply: the assistant message and the calls it dispatched."""

    message: dict[str, Any] | None  # None: nothing the API would accept, so nothing to commit
    stop_reason: str | None
    usage: dict[str, Any]
    calls: list[tuple[ToolCallReady, Future[ToolResult]]]
    sent: Any = None  # the cache audit's fingerprint of the request


NOT_STARTED = "Not run: the person interrupted the turn before this call started. Do not retry it unasked."
INTERRUPTED_NOTE = ("[The person interrupted this turn. Tool results above say what ran. Wait for their "
                    "next message instead of continuing the interrupted work.]")


class _Interrupted(Exception):
    """Ctrl-C during a request: what had streamed, and the calls it had dispatched."""

    def __init__(self, message: dict[str, Any] | None, calls: list[tuple[ToolCallReady, Future[ToolResult]]]):
        super().__init__("interrupted")
        self.message = message
        self.calls = calls


def _call_key(name: str, args: dict[str, Any]) -> str:
    return name + "\0" + json.dumps(args, sort_keys=True)


class Agent:
    """Holds the conversation and runs the turn loop for each user message."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        tools: ToolRegistry,
        renderer: Renderer,
        history: list[dict[str, Any]] | None = None,
        transcript: Transcript | None = None,
        confirm: Callable[[str, threading.Event], str] | None = None,
        model: ModelClient | None = None,
    ) -> None:
        self.config = config
        self.tools = tools
        self.renderer = renderer
        self.history: list[dict[str, Any]] = history if history is not None else []
        self.transcript = transcript
        self.model = model or client_for(
            config.provider,
            base_url=config.base_url,
            api_key=config.api_key,
            connect_timeout=config.connect_timeout,
            idle_timeout=config.idle_timeout,
            request_timeout=config.request_timeout,
        )
        self.guard = CommitGuard()  # every message reaches history through it
        self.scheduler = Scheduler(config.workers)
        self.gate = Gate(
            mode=config.mode,
            grace_seconds=config.grace_seconds,
            refuse_destructive=config.refuse_destructive,
            confirm=confirm,
            announce=renderer.show,
        )
        self.system = (
            [{"type": "text", "text": config.system_prompt}] if config.system_prompt
            else build_system_blocks(config.workspace)
        )
        # Results of calls from rolled-back attempts that an identical call in the retry may reuse.
        self._reusable: dict[str, list[ToolResult]] = defaultdict(list)
        self._begin_conversation()
        self._running: dict[str, ToolContext] = {}  # call id -> context, while a call runs
        self._running_lock = threading.Lock()
        self.busy = False  # a user message is being worked on
        self.interrupting = False  # the person pressed Ctrl-C during this message
        self.interruptible = False  # blocked reading the stream: Ctrl-C may raise right here
        self._leave = False  # ...and pressed it again: finish the cleanup fast, then leave
        self._aborted = False  # this request's stream was shut down for Ctrl-C (see abort_stream)

    def close(self) -> None:
        """Stop every tool still running (no process of ours outlives the agent), then release all."""
        self._stop_tools(kill=True)
        self.scheduler.shutdown()
        self.model.close()
        if self.transcript:
            self.transcript.close()

    def start_over(self, history: list[dict[str, Any]], transcript: Transcript | None) -> None:
        """Go on with another conversation (/clear, /resume); the one before stays on disk."""
        if self.transcript:
            self.transcript.close()
        self.history, self.transcript = history, transcript
        self._begin_conversation()

    def _begin_conversation(self) -> None:
        """What belongs to one conversation: its undo record, cache audit, context keeper, date note."""
        config, transcript = self.config, self.transcript
        self.undo = TurnSnapshots(config.workspace, transcript.id if transcript else None)  # see /undo
        self.cache_audit = CacheAudit(ttl_seconds=3600 if config.cache_ttl == "1h" else 300)
        self.context = self._context_keeper()  # records to this transcript, tells this audit
        self._date_told = _date_told_in(self.history)
        self._reusable.clear()  # results of another conversation's calls are not this one's

    def _context_keeper(self) -> ContextKeeper:
        """Clearing and compaction replace messages (never edit them in place), so the commit guard,
        the body encoder and the cache fingerprints notice a rewrite by identity; the audit is told."""
        config = self.config
        return ContextKeeper(context_window_for(config.model, config.context_window), config.max_tokens,
                             ask=self._ask, show=self.renderer.show, transcript=self.transcript,
                             rewritten=self.cache_audit.forget, automatic=config.compact)

    # -- the turn ---------------------------------------------------------------------------------

    def send(self, text: str) -> TurnEnded:
        """Run one user message to the end: as many model requests as the tools need."""
        blocks = [{"type": "text", "text": text}]
        today = date_note()
        if self.config.tell_date and today != self._date_told:
            # After the cached prefix, in the newest message: a new day must not invalidate the cache.
            blocks.insert(0, {"type": "text", "text": today})
            self._date_told = today
        if undone := self.undo.pending_note():  # the model must know which of its turns were taken back
            blocks.insert(0, {"type": "text", "text": undone})
        self.undo.begin_turn()
        try:
            self._commit({"role": "user", "content": blocks})
        except HistoryInvalid as error:
            return self._end(None, ok=False, message=f"internal error, request not sent: {error}")
        self.renderer.show(MessageSent(text))
        return self._run()

    def retry(self) -> TurnEnded:
        """Run the last user message again, after its attempts ran out."""
        if not self.history or self.history[-1]["role"] != "user":
            return self._end(None, ok=False, message="there is no unanswered message to retry")
        return self._run()

    def hurry(self) -> None:
        """The second Ctrl-C: kill every running tool now; the turn then ends and the agent leaves.

        Safe to call from a signal handler: it only sets flags and sends SIGKILL.
        """
        self._leave = True
        self._stop_tools(kill=True)

    def _run(self) -> TurnEnded:
        self.busy, self.interrupting, self._leave = True, False, False
        try:
            return self._requests_until_done()
        finally:
            self.undo.end_turn()
            self.busy = False

    def _requests_until_done(self) -> TurnEnded:
        for request_number in range(1, self.config.max_requests + 1):
            try:
                self._fit_context()
                try:
                    reply = self._request_with_retries(request_number)
                except PromptTooLong as too_long:  # compact, then one more try
                    self._fit_context(overflow=too_long)
                    reply = self._request_with_retries(request_number)
            except _Interrupted as stop:
                return self._stop_for_the_person(stop.message, stop.calls)
            except ModelError as error:
                return self._end(None, ok=False, message=f"{error} · /retry sends the same message again")
            except HistoryInvalid as error:
                return self._end(None, ok=False, message=f"internal error, request not sent: {error}")
            if reply.message is not None:
                self._commit(reply.message)
            self.renderer.show(self.context.measured(reply.usage))
            self.renderer.show(TurnCommitted(reply.stop_reason, reply.usage))
            if self.config.prompt_cache and (missed := self.cache_audit.check(reply.sent, Usage.from_api(reply.usage))):
                self.renderer.show(CacheMissed(missed))
            if reply.calls:
                try:
                    self._wait_for(reply.calls)
                except KeyboardInterrupt:
                    return self._stop_for_the_person(None, reply.calls)
                self._commit({"role": "user", "content": self._collect_results(reply.calls)})
            elif self.interrupting:  # pressed while the reply was being committed: nothing left to stop
                return self._stop_for_the_person(None, [])
            match reply.stop_reason:
                case "tool_use" | "pause_turn":
                    continue
                case "max_tokens" if reply.calls:
                    continue
                case "end_turn" | "stop_sequence":
                    return self._end(reply.stop_reason, ok=True)
                case "max_tokens":
                    return self._end("max_tokens", ok=False, message="the reply was cut off at max_tokens")
                case "refusal":
                    return self._end("refusal", ok=False, message="the model refused this request")
                case other:
                    return self._end(other, ok=False, message=f"unexpected stop reason {other!r}")
        return self._end(None, ok=False, message=f"stopped after {self.config.max_requests} model requests")

    def _end(self, stop_reason: str | None, *, ok: bool, message: str = "") -> TurnEnded:
        ended = TurnEnded(stop_reason, ok, message)
        self.renderer.show(ended)
        return ended

    def _commit(self, message: dict[str, Any]) -> None:
        """Append to history (through the commit guard, which refuses what the API would) and to the
        transcript on disk; consecutive messages of one role are merged, as the API itself would."""
        self.guard.commit(self.history, message)
        if self.transcript:
            self.transcript.append(message)

    # -- the context window (tools/conversation/compaction.py) ----------------------------------

    def _fit_context(self, overflow: PromptTooLong | None = None) -> None:
        """Before a request: clear old tool results or compact when the window needs it."""
        try:
            self.context.fit(self.history, self._request_body(), overflow=overflow)
        except KeyboardInterrupt:
            raise _Interrupted(None, []) from None

    def compact(self, instructions: str | None = None) -> bool:
        """Summarise the conversation now (``/compact [what to keep]``); False if it was not changed."""
        self.busy, self.interrupting = True, False
        try:
            return self.context.fit(self.history, self._body(), requested=True, instructions=instructions)
        except KeyboardInterrupt:
            return False
        finally:
            self.busy = False

    def context_used(self) -> ContextUsed:
        """How much of the context window the latest request used (for /cost and the status line)."""
        return self.context.use()

    def _ask(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A request outside the turn (the summary): cached, interruptible and retried like the others."""
        if self.config.prompt_cache:
            body = apply_cache_control(body, self.config.cache_ttl)
        return ask_for_text(self.model, body, self._interruptible, attempts=self.config.max_attempts,
                            pause=lambda attempt, after: self._sleep(self._backoff(attempt, after)))

    # -- one request, retried until it completes ---------------------------------------------

    def _request_with_retries(self, request_number: int) -> _Reply:
        attempts = self.config.max_attempts
        for attempt_number in range(1, attempts + 1):
            self.renderer.show(RequestStarted(attempt_number, request_number))
            attempt = _Attempt()
            try:
                reply = self._stream_reply(attempt)
            except PromptTooLong:
                raise  # refused before anything streamed: the caller compacts and retries
            except ModelError as error:
                if (error.retry_after or 0.0) > self.config.retry_after_max:
                    error = _too_long_a_wait(error)
                last = attempt_number == attempts or not error.retryable
                delay = None if last else self._backoff(attempt_number, error.retry_after)
                self._roll_back(attempt, error, attempt_number, delay)
                if last:
                    raise
                assert delay is not None
                try:
                    self._sleep(delay)
                except KeyboardInterrupt:
                    raise _Interrupted(None, []) from None
                continue
            self._reusable.clear()  # a committed reply ends the chance to reuse older results
            return reply
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter, so many agents do not retry in lockstep
        return max(delay, retry_after or 0.0)

    def _stream_reply(self, attempt: _Attempt) -> _Reply:
        assembler = TurnAssembler()
        self._aborted = False
        body = self._request_body()
        sent = self.cache_audit.fingerprint(body)
        if self.config.prompt_cache:
            body = apply_cache_control(body, self.config.cache_ttl)
        try:
            with self.model.stream(body) as events:
                for event in self._interruptible(events):
                    for update in assembler.feed(event):
                        self.renderer.show(update)
                        if isinstance(update, ToolCallReady):  # mid-stream dispatch
                            attempt.calls.append((update, self._dispatch(update, attempt)))
                    if assembler.complete:
                        break
            if not assembler.complete:
                raise RetryableModelError("the stream ended before message_stop")
        except (KeyboardInterrupt, ModelError) as stopped:
            # A socket shut down by Ctrl-C can fail the read before the handler has run: still an interrupt.
            if isinstance(stopped, KeyboardInterrupt) or self.interrupting or self._aborted:
                # Leaving the `with` above closed the response: the service stops generating (and billing).
                self._stop_tools(kill=False)
                raise _Interrupted(assembler.partial_message(), attempt.calls) from None
            wait([future for _, future in attempt.calls])  # running calls may finish: see below
            raise
        except BaseException:
            # Calls already running are allowed to finish: a half-done command is worse than a done one.
            wait([future for _, future in attempt.calls])
            raise
        finally:
            if assembler.usage:  # answered, so billed: committed, rolled back or interrupted alike
                self.renderer.show(RequestUsage(assembler.model, dict(assembler.usage)))
        message = assembler.message()
        calls = attempt.calls
        if assembler.stop_reason == "max_tokens":
            message, calls = _drop_cut_off_calls(message, calls, assembler.bad_tool_ids)
        repaired = repair_reply(message)
        if repaired is not None and (problems := self.guard.problems(self.history, repaired)):
            wait([future for _, future in attempt.calls])
            raise RetryableModelError("malformed reply: " + "; ".join(problems))
        return _Reply(repaired, assembler.stop_reason, assembler.usage, calls, sent)

    def _roll_back(self, attempt: _Attempt, error: ModelError, number: int, retry_in: float | None) -> None:
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
            if tool.access(self.config.workspace, call.input).writes:
                commands.append(str(call.input.get("command", call.name)))
            else:
                discarded += 1
        event = TurnRolledBack(
            str(error), number, self.config.max_attempts, retry_in,
            elapsed=time.monotonic() - attempt.started,
            undone=tuple(str(p.relative_to(self.config.workspace.resolve())) for p in restored),
            discarded=discarded, commands=tuple(commands),
            kept=tuple(str(p.relative_to(self.config.workspace.resolve())) for p in kept),
        )
        log.warning("rolled back attempt %d: %s; undone=%s commands=%s", number, error, event.undone, commands)
        if self.transcript:
            self.transcript.note("rolled_back", reason=str(error), undone=list(event.undone), commands=commands,
                                 kept=list(event.kept))
        self.renderer.show(event)

    # -- interrupts -------------------------------------------------------------------------------

    def _interruptible(self, events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The stream, with Ctrl-C allowed to raise only while blocked waiting for the next event."""
        while True:
            if self.interrupting:
                raise KeyboardInterrupt
            self.interruptible = True
            try:
                if self.interrupting:  # pressed just before we became interruptible: nobody else will raise
                    raise KeyboardInterrupt
                event = next(events, None)
            finally:
                self.interruptible = False
            if event is None:
                return
            yield event

    def _wait_for(self, calls: list[tuple[ToolCallReady, Future[ToolResult]]]) -> None:
        """Wait for the calls, noticing Ctrl-C within a tenth of a second, whichever thread got it."""
        futures = [future for _, future in calls]
        while wait(futures, timeout=0.1).not_done:
            if self.interrupting:
                raise KeyboardInterrupt

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.interrupting:
                raise KeyboardInterrupt
            time.sleep(min(left, 0.1))

    def abort_stream(self) -> None:
        """Wake a read blocked on the stream (from another thread, e.g. when a signal arrives)."""
        if self.interruptible:
            self._aborted = True
            self.model.abort()

    def _stop_for_the_person(
        self, message: dict[str, Any] | None, calls: list[tuple[ToolCallReady, Future[ToolResult]]]
    ) -> TurnEnded:
        """Settle every call, then commit what was shown and a result for each tool_use."""
        self._stop_tools(kill=False)
        second_interrupt = False
        try:
            wait([future for _, future in calls])
        except KeyboardInterrupt:  # the second Ctrl-C: no more grace periods
            second_interrupt = True
            self._stop_tools(kill=True)
            wait([future for _, future in calls], timeout=10)
        if message is not None:
            message = repair_reply(message)
        if message is not None and self.guard.problems(self.history, message):
            log.warning("interrupted reply not kept, the API would refuse it: %s", message)
            message, calls = None, []  # its calls' tool_use blocks go with it; no results are owed
        if message is not None:
            self._commit(message)  # every call's tool_use is in it, or in the reply committed before
        blocks = self._collect_results(calls)
        self._commit({"role": "user", "content": [*blocks, {"type": "text", "text": INTERRUPTED_NOTE}]})
        if self.transcript:
            self.transcript.note("interrupted", calls=[call.id for call, _ in calls])
        ended = self._end("interrupted", ok=False, message="interrupted; the conversation is saved")
        if second_interrupt or self._leave:
            raise KeyboardInterrupt  # the person pressed Ctrl-C twice: leave once all is saved
        return ended

    def _stop_tools(self, *, kill: bool) -> None:
        """Cancel calls that have not started; ask running ones to stop, or kill them outright."""
        self.scheduler.cancel_waiting(ToolResult(NOT_STARTED, is_error=True))
        with self._running_lock:
            running = list(self._running.values())
        for ctx in running:
            ctx.cancelled.set()
            process = ctx.extras.get("process")
            if kill and process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _request_body(self) -> dict[str, Any]:
        try:
            self.guard.ready_to_send(self.history)
        except HistoryInvalid as error:
            log.error("refusing to send an invalid history: %s", error)
            raise
        return self._body()

    def _body(self) -> dict[str, Any]:
        """The request for the history as it is (``/compact`` measures it even when it is empty)."""
        return {
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "system": self.system,
            "tools": self.tools.schemas(),
            "messages": self.history,
            "stream": True,
        }

    # -- tools ------------------------------------------------------------------------------------

    def _dispatch(self, call: ToolCallReady, attempt: _Attempt) -> Future[ToolResult]:
        """Hand a finished tool_use block to the scheduler; bad calls get an error result at once."""
        problem = call.error or self.tools.check(call.name, call.input)
        tool = self.tools.get(call.name)
        if problem or tool is None:
            return self._finished_now(call, ToolResult(problem or "unknown tool", is_error=True))
        if earlier := self._reusable.get(_call_key(call.name, call.input)):
            attempt.ran[call.id] = result = earlier.pop(0)  # reusable again if this attempt breaks off too
            attempt.reused.add(call.id)
            return self._finished_now(call, result, reused=True)
        workspace = self.config.workspace
        try:
            access = tool.access(workspace, call.input)
        except Exception:  # an odd path must not stop the call; order it after everything instead
            access = Access.whole_workspace(read_only=False)

        crash_record = CrashRecord(self.transcript, call.id, f"{call.name} {_shown(call.input)}".strip(), workspace)

        def before_write(path: Path) -> None:
            attempt.journal.record(path)
            attempt.wrote.setdefault(call.id, []).append(path)
            crash_record.file_changed(path)

        def run() -> ToolResult:
            started = time.monotonic()
            ctx = ToolContext(
                workspace,
                report_progress=lambda line: self.renderer.show(ToolProgress(call.id, line)),
                before_write=before_write,
                extras={"isolation": self.config.isolation, "network": self.config.network},
            )
            with self._running_lock:
                self._running[call.id] = ctx
            try:
                refusal = self.gate.check(tool, call.input, ctx, call.id)
                if refusal:
                    result = ToolResult(refusal, is_error=True)
                else:  # running only now: a grace window or a question comes first, on screen too
                    self.renderer.show(ToolRunning(call.id, call.name, tool.status(call.input)))
                    # A command's text is only read by a speed bump (sed 'w f' reads as read-only): unless the
                    # kernel binds the workspace read-only for it, it may write, so /undo must be able to return.
                    if access.writes or (call.name in SHELL_TOOLS and ctx.extras.get("writable", True)):
                        self.undo.before_call()  # a snapshot /undo can return to
                    crash_record.started()
                    result = attempt.ran[call.id] = tool.run(ctx, call.input)
                    for path in attempt.wrote.get(call.id, ()):
                        attempt.journal.seal(path)
                    crash_record.finished(result.is_error)
            finally:
                with self._running_lock:
                    self._running.pop(call.id, None)
            self.renderer.show(ToolFinished(call.id, call.name, result, time.monotonic() - started))
            return result

        return self.scheduler.submit(ScheduledCall(call.id, access, run))

    def _finished_now(self, call: ToolCallReady, result: ToolResult, reused: bool = False) -> Future[ToolResult]:
        future: Future[ToolResult] = Future()
        future.set_result(result)
        self.renderer.show(ToolFinished(call.id, call.name, result, 0.0, reused=reused))
        return future

    def _collect_results(self, calls: list[tuple[ToolCallReady, Future[ToolResult]]]) -> list[dict[str, Any]]:
        """One tool_result per tool_use, in block order, errors flagged."""
        blocks = []
        for call, future in calls:
            result = future.result()
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": result.content}
            if result.is_error:
                block["is_error"] = True
            blocks.append(block)
        return blocks


def _shown(args: dict[str, Any]) -> str:
    return str(args.get("command") or args.get("path") or "")


def _too_long_a_wait(error: ModelError) -> ModelError:
    """The service asked for a wait beyond ``retry_after_max``: end the turn and say so."""
    wait = error.retry_after or 0.0
    asked = "an unbounded time" if wait == float("inf") else (
        f"{wait:,.0f} s" if wait < 3600 else f"{wait / 3600:,.1f} h")
    return FatalModelError(f"{error} · the service asked to wait {asked} before retrying; try again later",
                           status=error.status, retry_after=error.retry_after)


def _date_told_in(history: list[dict[str, Any]]) -> str | None:
    """A resumed session already told the model its date; tell it again only when it changes."""
    return next((b["text"] for m in reversed(history) for b in as_blocks(m["content"])
                 if b.get("type") == "text" and b.get("text", "").startswith(DATE_NOTE_PREFIX)), None)


def _drop_cut_off_calls(
    message: dict[str, Any], calls: list[tuple[ToolCallReady, Future[ToolResult]]], cut_off: set[str]
) -> tuple[dict[str, Any], list[tuple[ToolCallReady, Future[ToolResult]]]]:
    """A tool_use truncated by max_tokens never ran; it leaves history so no result is owed."""
    content = [b for b in message["content"] if not (b.get("type") == "tool_use" and b.get("id") in cut_off)]
    return {**message, "content": content}, [(c, f) for c, f in calls if c.id not in cut_off]


def main(argv: list[str] | None = None) -> int:
    """The ``midstream`` command; the command line itself lives in tools/cli/main.py."""
    from midstream.tools.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
