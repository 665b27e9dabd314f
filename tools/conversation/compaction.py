"""Long sessions: every request stays inside the model's context window.

Three mechanisms, in the order they act. Each rewrites the history in place and only ever into a
valid conversation (checked with ``history_problems`` before it is applied):

1. **Budget.** The service reports what each request used (input + cache read + cache write); the
   next request is that plus an estimate of what was appended since, counted the way
   tools/testing/cache_model.py counts (a token per four characters), and never less than
   that estimate of the whole prompt. The window is known for Claude models (``CONTEXT_WINDOWS``)
   or set with ``context_window``; a "prompt is too long" answer that names the limit teaches it.
2. **Clearing.** Past ``clear_at`` of the window, the content of old, large tool results (before
   the last ``keep_recent`` replies) and the long strings of large tool inputs (in any reply) are
   replaced by a note of what was there and how to get it again (tools/conversation/clearing.py).
   It happens in one batch, and only when the batch frees at least ``clear_at_least`` of the
   window: each clearing changes an early message, so the prompt cache is rebuilt from there, once.
3. **Compaction.** Past ``compact_at`` (or on ``/compact``, or after a "prompt is too long"
   answer), the model is asked for a structured summary in a request that is the history as last
   sent plus one question, so it reads the cached prefix. The history becomes the summary plus the
   last replies verbatim; every kept ``tool_use`` keeps its ``tool_result`` because the kept part
   starts at an assistant message. System prompt and tools are untouched, so their cache survives.
   The rule for when it is worth a summary request (automatic or after "too long"): the messages it
   would replace must be larger than the summary's budget by at least ``compact_frees`` of the
   window (a tenth); a history whose bulk is in the replies kept verbatim is cleared instead.
4. **Set aside.** When nothing else fits a refused request and the person's newest message is
   itself larger than half the window, its text is replaced by a note saying so: the turn ends with
   one line, and the next message (which merges with the note) is sent as usual.

The transcript records both rewrites (``cleared`` and ``compaction`` records) after the messages
they replace, so the full history stays on disk and ``--continue`` resumes the compacted one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from midstream.tools.conversation.clearing import (
    apply_notes,
    assistant_indices,
    clearable,
    message_tokens,
    recent_from,
)
from midstream.tools.conversation.history import as_blocks, history_problems
from midstream.tools.conversation.summary import ACTIVITY, SUMMARY_TITLE, activity_of, trimmed, with_question
from midstream.tools.conversation.tokens import PromptCounter, estimate_tokens, prompt_tokens
from midstream.tools.events import (
    Compacted,
    CompactionFailed,
    CompactionStarted,
    ContextCleared,
    ContextUsed,
    Event,
)
from midstream.tools.wire.assembler import TurnAssembler
from midstream.tools.wire.client import ModelClient
from midstream.tools.wire.errors import MessageSetAside, ModelError, PromptTooLong, RetryableModelError
from midstream.tools.wire.retry import RetryPolicy

__all__ = [
    "CONTEXT_WINDOWS", "SUMMARY_QUESTION", "SUMMARY_TITLE", "ContextKeeper", "ContextPolicy",
    "ask_for_text", "context_window_for",
]

log = logging.getLogger("midstream.compaction")

# Longest matching prefix wins. The 1M-token windows of some models need a beta header we do not send.
CONTEXT_WINDOWS: dict[str, int] = {
    "claude-instant": 100_000,
    "claude-2.0": 100_000,
    "claude": 200_000,
}

SUMMARY_QUESTION = """[Compaction request] The conversation is about to be compacted: everything before the last \
few messages will be replaced by your summary, so work must be able to continue from it alone. Do not call \
any tools. Answer only with the summary, under these headings:

## Task
What the person asked for, in their own words where the wording matters, and what done looks like.
## Decisions
What was decided and why, including approaches that were tried and rejected.
## Files
Files read (with the facts in them that matter) and files changed (with what changed and where).
## Commands
Commands run and their outcomes: builds, tests passing or failing, errors.
## Open problems
What is unresolved, broken or uncertain.
## Next step
What you were about to do next."""


def context_window_for(model: str, configured: int | None = None) -> int | None:
    """The configured window, else the known one for this model, else None (not known)."""
    if configured:
        return configured
    matches = [prefix for prefix in CONTEXT_WINDOWS if model.lower().startswith(prefix)]
    return CONTEXT_WINDOWS[max(matches, key=len)] if matches else None


@dataclass
class ContextPolicy:
    """When to clear and when to compact, as fractions of the window."""

    clear_at: float = 0.5
    """Clear old tool results once a request would use this much of the window."""
    clear_at_least: float = 0.3
    """...but only when the batch frees this much of it (each clearing costs one cache rebuild)."""
    compact_at: float = 0.8
    """Compact once a request would use this much (or would not leave room for max_tokens)."""
    keep_recent: int = 3
    """Tool results of the last this many replies are never cleared."""
    keep_replies: int = 2
    """Replies (with their tool results) kept verbatim after the summary..."""
    keep_share: float = 0.2
    """...within this share of the window; larger results in them are cleared."""
    summary_max_tokens: int = 8192
    """Output budget of the summary request (capped by max_tokens)."""
    compact_frees: float = 0.1
    """A summary request is made only if it can free at least this share of the window."""


class _Transcript(Protocol):
    def record(self, kind: str, **details: Any) -> None: ...


Ask = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]


class ContextKeeper:
    """Keeps one conversation's requests inside the window; ``fit`` runs before every request."""

    def __init__(
        self,
        window: int | None,
        max_tokens: int,
        *,
        ask: Ask,
        show: Callable[[Event], None],
        transcript: _Transcript | None = None,
        rewritten: Callable[[], None] = lambda: None,
        policy: ContextPolicy | None = None,
        automatic: bool = True,
    ) -> None:
        self.window = window
        self.max_tokens = max_tokens
        self.policy = policy or ContextPolicy()
        self.automatic = automatic
        self._ask = ask
        self._show = show
        self._transcript = transcript
        self._rewritten = rewritten  # tell the cache audit a changed prefix is on purpose
        self._sent: tuple[int, int] | None = None  # (messages, tokens of the last) of the request in flight
        self._measured: tuple[int, int, int] | None = None  # ... and the prompt tokens it used
        self._last = 0
        self._compacted_to: int | None = None  # the size right after the last compaction
        self._counter = PromptCounter()  # counts what is new since the last request

    # -- the budget -----------------------------------------------------------------------------------

    def measured(self, usage: dict[str, Any]) -> ContextUsed:
        """A reply came back: what its request used is the base of the next estimate."""
        used = sum(int(usage.get(k) or 0) for k in
                   ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
        if used and self._sent is not None:
            self._measured = (*self._sent, used)
            self._last = used
        return self.use()

    def estimate(self, history: list[dict[str, Any]], base: dict[str, Any]) -> int:
        """The prompt tokens of the next request with this history."""
        counted = self._counter.count({**base, "messages": history})
        if self._measured is not None and 0 < self._measured[0] <= len(history):
            count, last, used = self._measured
            grown = sum(message_tokens(m) for m in history[count - 1:]) - last
            counted = max(counted, used + grown)
        self._last = counted
        return counted

    def use(self) -> ContextUsed:
        """The size of the latest request against the window."""
        return ContextUsed(self._last, self.window)

    @property
    def _hard_limit(self) -> int:
        """The largest prompt the service accepts beside the reply's budget."""
        assert self.window
        return self.window - min(self.max_tokens, self.window // 4)

    @property
    def compact_limit(self) -> int:
        assert self.window
        # The API refuses a prompt that leaves less than max_tokens of the window; a reserve of more
        # than a quarter of it means a server that does not enforce that (it answered before).
        return int(min(self.policy.compact_at * self.window, self._hard_limit))

    # -- before each request -----------------------------------------------------------------------

    def fit(
        self,
        history: list[dict[str, Any]],
        base: dict[str, Any],
        *,
        overflow: PromptTooLong | None = None,
        requested: bool = False,
        instructions: str | None = None,
    ) -> bool:
        """Clear or compact ``history`` in place if the next request needs it; True if it changed.

        ``overflow``: the service just refused the request as too long; clear and compact, and
        raise if that was not possible. ``requested``: the person asked (/compact).
        """
        if overflow is not None and overflow.limit and (not self.window or overflow.limit < self.window):
            self.window = overflow.limit  # the service knows best: a proxy or a server may allow less
        before = self.estimate(history, base)
        if overflow is not None and overflow.tokens:
            before = max(before, overflow.tokens)
        changed = False
        if overflow is not None:
            changed = self._clear(history, base, before, protect=self.policy.keep_replies, at_least=1)
            over = before - self._hard_limit if self.window else 1
            if self._frees_enough(history, min(self.policy.compact_frees * (self.window or 0), over) or 1):
                changed = self._compact(history, base, "overflow", None, before) or changed
            changed = changed or self._clear(history, base, before, protect=0, at_least=1)  # the unread ones too
            if not changed:
                self._set_aside(history, overflow)
                raise overflow
        elif requested:
            changed = self._compact(history, base, "requested", instructions, before)
        elif self.automatic and self.window:
            policy = self.policy
            at_least = int(policy.clear_at_least * self.window)
            if before >= self.compact_limit:
                freed = self._clearable_tokens(history, self.policy.keep_recent)
                if freed >= at_least and before - freed < policy.clear_at * self.window:  # enough, and cheaper
                    changed = self._clear(history, base, before, protect=policy.keep_recent, at_least=at_least)
                elif self._worth_compacting(history, before):
                    changed = self._compact(history, base, "auto", None, before)
                elif before >= self._hard_limit:  # it would be refused: the unread results too
                    changed = self._clear(history, base, before, protect=0, at_least=1)
            elif before >= policy.clear_at * self.window:
                changed = self._clear(history, base, before, protect=policy.keep_recent, at_least=at_least)
        if history:
            self._sent = (len(history), message_tokens(history[-1]))
        return changed  # a clearing or compaction has just estimated the new size itself

    # -- clearing ------------------------------------------------------------------------------------

    def _clearable_tokens(self, history: list[dict[str, Any]], protect: int) -> int:
        return sum(freed for *_, freed in clearable(history, recent_from(history, protect)))

    def _clear(self, history: list[dict[str, Any]], base: dict[str, Any], before: int, *,
               protect: int, at_least: int) -> bool:
        found = clearable(history, recent_from(history, protect))
        if not found or sum(freed for *_, freed in found) < at_least:
            return False
        notes = apply_notes(history, found)
        self._measured = None
        after = self.estimate(history, base)
        if self._transcript:
            self._transcript.record("cleared", notes=notes)
        self._rewritten()
        inputs = sum(1 for index, *_ in found if history[index]["role"] == "assistant")
        log.info("cleared %d tool results and %d inputs: %d -> %d tokens", len(found) - inputs, inputs, before, after)
        self._show(ContextCleared(len(found) - inputs, before, after, inputs))
        return True

    # -- compaction ----------------------------------------------------------------------------------

    def _compact(self, history: list[dict[str, Any]], base: dict[str, Any], reason: str,
                 instructions: str | None, before: int) -> bool:
        assistants = assistant_indices(history)
        if not assistants:
            self._show(CompactionFailed(reason, "nothing to compact yet"))
            return False
        self._show(CompactionStarted(reason, before))
        try:
            summary, usage = self._summary(history, base, instructions)
        except ModelError as error:
            self._show(CompactionFailed(reason, str(error)))
            return False
        except KeyboardInterrupt:
            self._show(CompactionFailed(reason, "interrupted; the conversation is unchanged"))
            raise
        start = self._tail_start(history, assistants)
        tail = [dict(m) for m in history[start:]]
        if self.window:
            # Older results in the kept part go first, largest first; the newest ones (which the
            # model has not read yet) only when the kept part would otherwise take half the window.
            found = sorted(clearable(tail, len(tail)), key=lambda item: (item[0] == len(tail) - 1, -item[3]))
            for item in found:
                size = sum(message_tokens(m) for m in tail)
                newest = item[0] == len(tail) - 1
                if size <= (self.window // 2 if newest else int(self.policy.keep_share * self.window)):
                    continue
                apply_notes(tail, [item])
        title = (f"{SUMMARY_TITLE} The summary below replaces {start} earlier messages; the last "
                 f"{len(tail)} follow verbatim. The full conversation is kept in the session transcript.")
        activity = activity_of(history[:start])
        text = f"{title}\n\n{summary}" + (f"\n\n{ACTIVITY}\n{activity}" if activity else "")
        compacted = [{"role": "user", "content": [{"type": "text", "text": text}]}, *tail]
        if problems := history_problems(compacted):  # cannot happen: the tail starts at an assistant message
            log.error("compaction would make an invalid history, not applied: %s", problems)
            self._show(CompactionFailed(reason, "internal error: the compacted history would be invalid"))
            return False
        history[:] = compacted
        self._measured = None
        after = self._compacted_to = self.estimate(history, base)  # nothing measured: the count itself
        if self._transcript:
            self._transcript.record("compaction", messages=compacted, reason=reason, before=before, after=after,
                                    summarised=start, kept=len(tail))
        self._rewritten()
        log.info("compacted (%s): %d -> %d tokens, %d messages summarised, %d kept", reason, before, after,
                 start, len(tail))
        self._show(Compacted(reason, before, after, start, len(tail), usage))
        return True

    def _worth_compacting(self, history: list[dict[str, Any]], before: int) -> bool:
        """Not before there is something to summarise, nor again before the history has grown by a
        tenth of the window since the last compaction (a system prompt and tools that fill the window
        would otherwise cost a summary request before every request), nor for a handful of tokens."""
        if not assistant_indices(history):
            return False
        assert self.window
        fresh = self._compacted_to is None or before - self._compacted_to >= self.window // 10
        return fresh and self._frees_enough(history, self.policy.compact_frees * self.window)

    def _frees_enough(self, history: list[dict[str, Any]], needed: float) -> bool:
        """Would a summary free ``needed`` tokens (a tenth of the window; after a refusal, no more
        than the refused request was over by)? It replaces the messages before the verbatim tail by a
        summary taken to be half their size at most (and no more than ``summary_max_tokens``)."""
        assistants = assistant_indices(history)
        if not assistants or not self.window:
            return bool(assistants)
        start = self._tail_start(history, assistants)
        replaced = sum(message_tokens(m) for m in history[:start])
        summary = min(self.policy.summary_max_tokens, self.max_tokens, replaced // 2)
        return replaced - summary >= needed

    def _set_aside(self, history: list[dict[str, Any]], overflow: PromptTooLong) -> None:
        """The person's newest message alone does not fit: its long text becomes a note, and the turn
        ends with one line saying so (raised); nothing else of the history changes."""
        window = self.window or overflow.limit
        if not history or history[-1]["role"] != "user" or not window:
            return
        blocks = as_blocks(history[-1]["content"])
        large = [i for i, b in enumerate(blocks) if b.get("type") == "text" and estimate_tokens(b) > window // 2]
        if not large:
            return
        size = sum(estimate_tokens(blocks[i]) for i in large)
        for i in large:
            blocks[i] = {"type": "text", "text": f"[Set aside: the person's message of {len(blocks[i]['text']):,} "
                         "characters was larger than the context window and was not sent.]"}
        history[-1] = {**history[-1], "content": blocks}
        self._measured = None
        if self._transcript:
            self._transcript.record("compaction", messages=list(history), reason="set_aside")
        self._rewritten()
        raise MessageSetAside(f"your message (about {size:,} tokens) is larger than the model's context window "
                            f"({window:,} tokens) and was set aside, not sent: send a shorter one, or save it to a "
                            "file and ask for the parts that matter", tokens=size, limit=window)

    def _tail_start(self, history: list[dict[str, Any]], assistants: list[int]) -> int:
        """Where the verbatim part begins: an assistant message, within the reply count and budget."""
        budget = int(self.policy.keep_share * self.window) if self.window else None
        start = assistants[-1]
        for index in reversed(assistants[-self.policy.keep_replies:] if self.policy.keep_replies else []):
            if budget is not None and sum(message_tokens(m) for m in history[index:]) > budget:
                break
            start = index
        return start

    def _summary(self, history: list[dict[str, Any]], base: dict[str, Any],
                 instructions: str | None) -> tuple[str, dict[str, Any]]:
        """Ask for the summary with the history as sent, trimmed only when it cannot fit."""
        question = SUMMARY_QUESTION + (f"\n\nThe person asks to keep in particular: {instructions}"
                                       if instructions else "")
        messages = with_question(history, question)
        max_tokens = min(self.policy.summary_max_tokens, self.max_tokens)
        limit = self.window - max_tokens if self.window else None
        for _ in range(4):
            if limit is not None:
                messages = trimmed(messages, base, limit)
            body = {**base, "max_tokens": max_tokens, "messages": messages}
            try:
                text, usage = self._ask(body)
            except PromptTooLong as error:
                # In our own count: the service's tokenizer may count this prompt higher than we do.
                ours = prompt_tokens(body)
                allowed = ours * (error.limit - max_tokens) // error.tokens if error.limit and error.tokens else ours
                limit = min(limit or ours, allowed) * 9 // 10
                continue
            if not text.strip():
                raise ModelError("the model's summary was empty")
            return text.strip(), usage
        raise ModelError("the conversation is too long even to summarise")


def ask_for_text(model: ModelClient, body: dict[str, Any], events: Callable[[Iterator[dict[str, Any]]], Iterator[
        dict[str, Any]]], *, retry: RetryPolicy, sleep: Callable[[float], None],
        billed: Callable[[dict[str, Any]], None] = lambda usage: None) -> tuple[str, dict[str, Any]]:
    """One request outside the turn loop (the summary): its text and usage, retried like a turn.

    ``events`` wraps the stream (the loop's Ctrl-C handling); ``retry`` says how long to ``sleep``
    before each new try, and when to stop; ``billed`` hears the usage of every answered try, the
    ones that broke off, came back empty or were interrupted too. Tool calls in the answer are
    ignored: nothing is dispatched.
    """
    for attempt in range(1, retry.attempts + 1):
        assembler = TurnAssembler()
        try:
            with model.stream(body) as stream:
                for event in events(stream):
                    assembler.feed(event)
                    if assembler.complete:
                        break
            if not assembler.complete:
                raise RetryableModelError("the stream ended before message_stop")
        except RetryableModelError as error:
            if assembler.usage:  # answered, so billed
                billed(dict(assembler.usage))
            shown, wait = retry.after(attempt, error)
            if wait is None:
                if shown is error:
                    raise
                raise shown from error
            sleep(wait)
            continue
        except BaseException:  # interrupted, or a failure no try can mend: what was answered was billed
            if assembler.usage:
                billed(dict(assembler.usage))
            raise
        billed(dict(assembler.usage))
        text = "".join(b.get("text", "") for b in assembler.message()["content"] if b.get("type") == "text")
        return text, assembler.usage
    raise AssertionError("unreachable")
