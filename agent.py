"""midstream: a coding agent whose tools start the moment their call is complete in the stream.

The story of one turn, top to bottom:

1. The person's message is committed to history (Messages API dicts, nothing of ours in them)
   and to the session transcript on disk.
   Before each request, the conversation is fitted to the context window (old tool results
   cleared, or all but the last replies summarised: tools/conversation/compaction.py); a "prompt
   is too long" answer does the same, and the request is tried once more.
2. One streaming request goes out. Each SSE event is fed to the TurnAssembler; what it reports
   goes to the renderer, and each finished ``tool_use`` block goes straight to ``Calls.dispatch``
   (tools/calls.py: one call from start to finish, judged once), which starts it on the Scheduler
   while the model keeps streaming.
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

import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from dataclasses import dataclass
from typing import Any

from midstream.prompts import build_system_blocks, date_note, date_told_in
from midstream.sandbox.permissions import Gate
from midstream.sandbox.spare import close_spares
from midstream.sandbox.transaction import transactions_unavailable
from midstream.sandbox.undo import TurnUndo
from midstream.tools.calls import Attempt, Calls, Dispatched
from midstream.tools.config import DEFAULT_MODEL, AgentConfig, model_client
from midstream.tools.conversation.cache import CacheAudit, apply_cache_control
from midstream.tools.conversation.compaction import ContextKeeper, ask_for_text, context_window_for
from midstream.tools.conversation.history import CommitGuard, HistoryInvalid, repair_reply
from midstream.tools.conversation.ledger import Ledger
from midstream.tools.conversation.transcript import Transcript
from midstream.tools.conversation.usage import Usage
from midstream.tools.events import (
    CacheMissed,
    ContextUsed,
    MessageSent,
    Renderer,
    RequestStarted,
    RequestUsage,
    ToolCallReady,
    TurnCommitted,
    TurnEnded,
)
from midstream.tools.hooks.loop import LoopHooks
from midstream.tools.hooks.policy import Hooks
from midstream.tools.registry import ToolRegistry
from midstream.tools.scheduler import Scheduler
from midstream.tools.tracing import NOT_TRACING, LoopTrace, Tracer
from midstream.tools.wire.assembler import TurnAssembler
from midstream.tools.wire.client import ModelClient
from midstream.tools.wire.errors import RETRY_HINT, MessageSetAside, ModelError, PromptTooLong, RetryableModelError
from midstream.tools.wire.retry import RetryPolicy

__all__ = ["DEFAULT_MODEL", "Agent", "AgentConfig", "main", "model_client"]

log = logging.getLogger("midstream.agent")
# Library practice: without a configured handler our warnings must not reach the terminal through
# logging's last resort; the command line sends them to the log file instead (tools/cli/logs.py).
logging.getLogger("midstream").addHandler(logging.NullHandler())

@dataclass
class _Reply:
    """One complete reply: the assistant message and the calls it dispatched."""

    message: dict[str, Any] | None  # None: nothing the API would accept, so nothing to commit
    stop_reason: str | None
    usage: dict[str, Any]
    calls: list[Dispatched]
    sent: Any = None  # the cache audit's fingerprint of the request


INTERRUPTED_NOTE = ("[The person interrupted this turn. Tool results above say what ran. Wait for their "
                    "next message instead of continuing the interrupted work.]")


class _Interrupted(Exception):
    """Ctrl-C during a request: what had streamed, and the calls it had dispatched."""

    def __init__(self, message: dict[str, Any] | None, calls: list[Dispatched]):
        super().__init__("interrupted")
        self.message = message
        self.calls = calls


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
        hooks: Hooks | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.tools = tools
        # Usage and cost are kept here, once, as events pass on to the renderer (/cost reads them).
        self.ledger = Ledger(renderer)
        # Traces see every event the loop shows (tools/tracing.py); off, the renderer is the ledger itself.
        self.trace = LoopTrace(tracer or NOT_TRACING, model=config.model, provider=config.provider,
                               max_tokens=config.max_tokens, conversation=transcript.id if transcript else "")
        self.renderer: Renderer = self.trace.observing(self.ledger)
        self.history: list[dict[str, Any]] = history if history is not None else []
        self.transcript = transcript
        self.model = model or model_client(config)
        self.retries = RetryPolicy(config.max_attempts, config.backoff_base, config.backoff_max, config.retry_after_max)
        self.guard = CommitGuard()  # every message reaches history through it
        self.scheduler = Scheduler(config.workers)
        self.gate = Gate(
            mode=config.mode,
            grace_seconds=config.grace_seconds,
            refuse_destructive=config.refuse_destructive,
            confirm=confirm,
            announce=self.renderer.show,
            isolation=config.isolation,
            network=config.network,
        )
        self.calls = Calls(config.workspace, tools, self.scheduler, self.gate, self.renderer)
        # Claude Code's hooks (tools/hooks/): PreToolUse and PostToolUse run in tools/calls.py, the rest here.
        self.calls.trace = self.trace
        self.hooks = self.calls.hooks = LoopHooks(
            hooks or Hooks([], config.workspace, isolation=config.isolation, mode=config.mode), self.renderer.show,
            self.trace, before_run=lambda: self.undo.before_call())
        self.system = (
            [{"type": "text", "text": config.system_prompt}] if config.system_prompt
            else build_system_blocks(config.workspace)
        )
        self._begin_conversation()
        self.busy = False  # a user message is being worked on
        self.interrupting = False  # the person pressed Ctrl-C during this message
        self.interruptible = False  # blocked reading the stream: Ctrl-C may raise right here
        self._leave = False  # ...and pressed it again: finish the cleanup fast, then leave
        self._aborted = False  # this request's stream was shut down for Ctrl-C (see abort_stream)

    def close(self, reason: str = "other") -> None:
        """Stop every tool still running (no process of ours outlives the agent), then release all."""
        self.calls.stop(kill=True)
        self.hooks.session_end(reason)
        self.scheduler.shutdown()
        close_spares()  # the sandboxes set up ahead of time for the next command
        self.model.close()
        if self.transcript:
            self.transcript.close()

    def start_over(self, history: list[dict[str, Any]], transcript: Transcript | None) -> None:
        """Go on with another conversation (/clear, /resume); the one before stays on disk."""
        if self.transcript:
            self.transcript.close()
        self.hooks.session_end("clear")
        self.history, self.transcript = history, transcript
        self._begin_conversation()
        self.hooks.session_start("resume" if history else "clear")

    def _begin_conversation(self) -> None:
        """What belongs to one conversation: its undo record, cache audit, context keeper, date note."""
        config, transcript = self.config, self.transcript
        self.undo = TurnUndo(config.workspace, transcript.id if transcript else None,  # see /undo
                             overlay=lambda: not transactions_unavailable(config.workspace.resolve(), config.isolation))
        self.calls.undo, self.calls.transcript = self.undo, transcript
        self.cache_audit = CacheAudit(ttl_seconds=3600 if config.cache_ttl == "1h" else 300)
        self.context = self._context_keeper()  # records to this transcript, tells this audit
        self._date_told = date_told_in(self.history)
        self.calls.forget_reusable()  # results of another conversation's calls are not this one's
        self.hooks.hooks.session_id = self.trace.conversation = transcript.id if transcript else ""
        self.hooks.hooks.transcript_path = str(transcript.path) if transcript else ""  # what hooks read on stdin

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
        self.trace.begin_turn(text)
        self.busy, self.interrupting = True, False  # Esc and Ctrl-C stop a UserPromptSubmit hook too
        try:
            refused, context = self.hooks.prompt(text, lambda: self.interrupting)
        finally:
            self.busy = False
        if refused is not None and self.interrupting:  # Esc or Ctrl-C while the hook ran
            return self._end("interrupted", ok=False, message="interrupted; the message was not sent")
        if refused is not None:  # not sent, not in history: the person sees why
            return self._end(None, ok=False, message=f"the UserPromptSubmit hook stopped this message, which was "
                                                     f"not sent: {refused}")
        blocks = [*context, {"type": "text", "text": text}]
        today = date_note()
        if self.config.tell_date and today != self._date_told:
            # After the cached prefix, in the newest message: a new day must not invalidate the cache.
            blocks.insert(0, {"type": "text", "text": today})
            self._date_told = today
        if undone := self.undo.pending_note():  # the model must know which of its turns were taken back
            blocks.insert(0, {"type": "text", "text": undone})
        self.undo.begin_turn()
        self.calls.forget_reusable()  # a new message is a new request: what an earlier one ran may run again
        try:
            self._commit({"role": "user", "content": blocks})
        except HistoryInvalid as error:
            return self._end(None, ok=False, message=f"internal error, request not sent: {error}")
        self.renderer.show(MessageSent(text))
        return self._run()

    def retry(self) -> TurnEnded:
        """Run the last user message again, after its attempts ran out (what they ran is reused)."""
        if not self.history or self.history[-1]["role"] != "user":
            return self._end(None, ok=False, message="there is no unanswered message to retry")
        self.trace.begin_turn("")
        return self._run()

    def hurry(self) -> None:
        """The second Ctrl-C: kill every running tool now; the turn then ends and the agent leaves.

        Safe to call from a signal handler: it only sets flags and sends SIGKILL.
        """
        self._leave = True
        self.calls.stop(kill=True)

    def _run(self) -> TurnEnded:
        self.busy, self.interrupting, self._leave = True, False, False
        try:
            self.tools.between_turns(lambda: self.interrupting)  # MCP tools join here, never within a turn
            if self.interrupting:  # Ctrl-C while the first turn waited for a starting server: no request
                return self._stop_for_the_person(None, [])
            return self._requests_until_done()
        except BaseException:  # SIGTERM, SIGHUP, an exit: a change set waiting in its countdown is discarded
            self.calls.discard_pending()
            raise
        finally:
            self.undo.end_turn()
            self.busy = False

    def _requests_until_done(self) -> TurnEnded:
        limit = self.config.max_requests
        for request_number in itertools.count(1):
            if request_number > limit:
                if not self._may_go_on(limit):
                    return self._end("max_requests", ok=False, message=f"stopped after {limit} model requests")
                limit += self.config.max_requests
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
                hint = "" if isinstance(error, MessageSetAside) else RETRY_HINT
                return self._end(None, ok=False, message=f"{error}{hint}")
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
                self._commit({"role": "user", "content": self.calls.results(reply.calls)})
                if (why := self.hooks.take_stop()) is not None:  # a hook answered continue = false
                    return self._end(None, ok=False, message=f"a hook ended the turn: {why}")
            elif self.interrupting:  # pressed while the reply was being committed: nothing left to stop
                return self._stop_for_the_person(None, [])
            match reply.stop_reason:
                case "tool_use" if not reply.calls:  # a server whose parser dropped a malformed call
                    return self._end("tool_use", ok=False, message="the model asked to use a tool but sent no "
                                     "tool call (its server may have dropped a malformed one)")
                case "tool_use" | "pause_turn":
                    continue
                case "max_tokens" if reply.calls:
                    continue
                case "end_turn" | "stop_sequence":
                    if (go_on := self.hooks.stop(lambda: self.interrupting)) is not None:
                        self._commit({"role": "user", "content": [{"type": "text", "text": go_on}]})
                        continue  # a Stop hook sent the model on, and told it why
                    return self._end(reply.stop_reason, ok=True)
                case "max_tokens":
                    return self._end("max_tokens", ok=False, message="the reply was cut off at max_tokens")
                case "refusal":
                    return self._end("refusal", ok=False, message="the model refused this request")
                case other:
                    return self._end(other, ok=False, message=f"unexpected stop reason {other!r}")
        raise AssertionError("unreachable")

    def _may_go_on(self, done: int) -> bool:
        """At the request limit: a person is asked whether to go on; without one the turn ends."""
        if self.gate.confirm is None:
            return False
        try:
            return self.gate.confirm(f"{done} model requests for this message; go on?", threading.Event()) != "no"
        except KeyboardInterrupt:
            return False

    def _end(self, stop_reason: str | None, *, ok: bool, message: str = "") -> TurnEnded:
        ended = self.ledger.ended(TurnEnded(stop_reason, ok, message))  # with this message's usage
        self.renderer.show(ended)
        self.trace.end_turn(ended)
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
        # Every answered try is billed, priced by the model in use (the one asked for the summary).
        return ask_for_text(self.model, body, self._interruptible, retry=self.retries, sleep=self._sleep,
                            billed=lambda usage: self.renderer.show(RequestUsage(self.config.model, usage)))

    # -- one request, retried until it completes ---------------------------------------------

    def _request_with_retries(self, request_number: int) -> _Reply:
        for attempt_number in range(1, self.retries.attempts + 1):
            self.renderer.show(RequestStarted(attempt_number, request_number))
            attempt = Attempt()
            try:
                reply = self._stream_reply(attempt)
            except PromptTooLong:
                raise  # refused before anything streamed: the caller compacts and retries
            except ModelError as error:
                shown, delay = self.retries.after(attempt_number, error)
                self.calls.roll_back(attempt, shown, attempt_number, self.retries.attempts, delay)
                if delay is None:
                    if shown is error:
                        raise
                    raise shown from error
                try:
                    self._sleep(delay)
                except KeyboardInterrupt:
                    raise _Interrupted(None, []) from None
                continue
            self.calls.forget_reusable()  # a committed reply ends the chance to reuse older results
            return reply
        raise AssertionError("unreachable")

    def _stream_reply(self, attempt: Attempt) -> _Reply:
        assembler = TurnAssembler()
        self._aborted = False
        body = self._request_body()
        sent = self.cache_audit.fingerprint(body)
        if self.config.prompt_cache:
            body = apply_cache_control(body, self.config.cache_ttl)
        try:
            traceparent = self.trace.traceparent()  # the attempt's span, so the service's trace can join ours
            with self.model.stream(body, {"traceparent": traceparent} if traceparent else None) as events:
                for event in self._interruptible(events):
                    for update in assembler.feed(event):
                        update = self.calls.worded(update)
                        self.renderer.show(update)
                        if isinstance(update, ToolCallReady):  # mid-stream dispatch
                            attempt.calls.append((update, self.calls.dispatch(update, attempt)))
                    if assembler.complete:
                        break
            if not assembler.complete:
                raise RetryableModelError("the stream ended before message_stop")
        except (KeyboardInterrupt, ModelError) as stopped:
            # A socket shut down by Ctrl-C can fail the read before the handler has run: still an interrupt.
            if isinstance(stopped, KeyboardInterrupt) or self.interrupting or self._aborted:
                # Leaving the `with` above closed the response: the service stops generating (and billing).
                self.calls.stop(kill=False)
                raise _Interrupted(assembler.partial_message(), attempt.calls) from None
            attempt.discard.set()  # a countdown of this reply's ends now: nothing applied on its behalf
            wait(attempt.futures())  # dispatched calls run to their end: see below
            raise
        except BaseException:
            # Every dispatched call runs (a half-done command is worse than a done one, and whether a call
            # queued behind another has started when the drop arrives is chance: the rule must not be),
            attempt.discard.set()  # but a change set waiting in a countdown is discarded
            wait(attempt.futures())
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
            attempt.discard.set()
            wait(attempt.futures())
            raise RetryableModelError("malformed reply: " + "; ".join(problems))
        return _Reply(repaired, assembler.stop_reason, assembler.usage, calls, sent)

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

    def _wait_for(self, calls: list[Dispatched]) -> None:
        """Wait for the calls, noticing Ctrl-C within a tenth of a second, whichever thread got it."""
        futures = [future for _, future in calls]
        while wait(futures, timeout=0.1).not_done:
            if self.interrupting:
                raise KeyboardInterrupt
        if self.interrupting:  # they ended early because the person stopped them (a hook stops at once)
            raise KeyboardInterrupt

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.interrupting:
                raise KeyboardInterrupt
            time.sleep(min(left, 0.1))

    def abort_stream(self) -> None:
        """Wake a read blocked on the stream (from another thread, e.g. when a signal arrives)."""
        self.hooks.stop_all()  # a running hook stops at once, wherever it runs
        if self.interruptible:
            self._aborted = True
            self.model.abort()

    def _stop_for_the_person(self, message: dict[str, Any] | None, calls: list[Dispatched]) -> TurnEnded:
        """Settle every call, then commit what was shown and a result for each tool_use."""
        self.calls.stop(kill=False)
        second_interrupt = False
        try:
            wait([future for _, future in calls])
        except KeyboardInterrupt:  # the second Ctrl-C: no more grace periods
            second_interrupt = True
            self.calls.stop(kill=True)
            wait([future for _, future in calls], timeout=10)
        if message is not None:
            message = repair_reply(message)
        if message is not None and self.guard.problems(self.history, message):
            log.warning("interrupted reply not kept, the API would refuse it: %s", message)
            message, calls = None, []  # its calls' tool_use blocks go with it; no results are owed
        if message is not None:
            self._commit(message)  # every call's tool_use is in it, or in the reply committed before
        blocks = self.calls.results(calls)
        self._commit({"role": "user", "content": [*blocks, {"type": "text", "text": INTERRUPTED_NOTE}]})
        if self.transcript:
            self.transcript.note("interrupted", calls=[call.id for call, _ in calls])
        ended = self._end("interrupted", ok=False, message="interrupted; the conversation is saved")
        if second_interrupt or self._leave:
            raise KeyboardInterrupt  # the person pressed Ctrl-C twice: leave once all is saved
        return ended

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

def _drop_cut_off_calls(message: dict[str, Any], calls: list[Dispatched],
                        cut_off: set[str]) -> tuple[dict[str, Any], list[Dispatched]]:
    """A tool_use truncated by max_tokens never ran; it leaves history so no result is owed."""
    content = [b for b in message["content"] if not (b.get("type") == "tool_use" and b.get("id") in cut_off)]
    return {**message, "content": content}, [(c, f) for c, f in calls if c.id not in cut_off]


def main(argv: list[str] | None = None) -> int:
    """The ``midstream`` command; the command line itself lives in tools/cli/main.py."""
    from midstream.tools.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
