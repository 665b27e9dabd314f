"""Long sessions: every request stays inside the model's context window.

Three mechanisms, in the order they act. Each rewrites the history in place and only ever into a
valid conversation (checked with ``history_problems`` before it is applied):

1. **Budget.** The service reports what each request used (input + cache read + cache write); the
   next request is that plus an estimate of what was appended since, counted the way
   tools/testing/cache_model.py counts (a token per four characters), and never less than
   that estimate of the whole prompt. The window is known for Claude models (``CONTEXT_WINDOWS``)
   or set with ``context_window``; a "prompt is too long" answer that names the limit teaches it.
2. **Clearing.** Past ``clear_at`` of the window, the content of old, large tool results (before
   the last ``keep_recent`` replies) is replaced by a note of what was there and how to get it
   again. It happens in one batch, and only when the batch frees at least ``clear_at_least`` of the
   window: each clearing changes an early message, so the prompt cache is rebuilt from there, once.
3. **Compaction.** Past ``compact_at`` (or on ``/compact``, or after a "prompt is too long"
   answer), the model is asked for a structured summary in a request that is the history as last
   sent plus one question, so it reads the cached prefix. The history becomes the summary plus the
   last replies verbatim; every kept ``tool_use`` keeps its ``tool_result`` because the kept part
   starts at an assistant message. System prompt and tools are untouched, so their cache survives.

The transcript records both rewrites (``cleared`` and ``compaction`` records) after the messages
they replace, so the full history stays on disk and ``--continue`` resumes the compacted one.
"""

from __future__ import annotations

import logging
import re
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
from midstream.tools.conversation.tokens import prompt_tokens
from midstream.tools.events import (
    Compacted,
    CompactionFailed,
    CompactionStarted,
    ContextCleared,
    ContextUsed,
    Event,
)
from midstream.tools.wire.assembler import TurnAssembler
from midstream.tools.wire.model import ModelClient, ModelError, PromptTooLong, RetryableModelError
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

SUMMARY_TITLE = "[Earlier conversation, compacted]"
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
_LEFT_OUT = "[The beginning of the conversation did not fit in the request for the summary and is left out.]"


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
        counted = prompt_tokens({**base, "messages": history})
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
    def compact_limit(self) -> int:
        assert self.window
        # The API refuses a prompt that leaves less than max_tokens of the window; a reserve of more
        # than a quarter of it means a server that does not enforce that (it answered before).
        return int(min(self.policy.compact_at * self.window, self.window - min(self.max_tokens, self.window // 4)))

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
            changed = self._compact(history, base, "overflow", None, before) or changed
            if not changed:
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
                else:
                    changed = self._compact(history, base, "auto", None, before) if self._worth_compacting(
                        history, before) else False
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
        log.info("cleared %d tool results: %d -> %d tokens", len(found), before, after)
        self._show(ContextCleared(len(found), before, after))
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
        activity = _activity(history[:start])
        text = f"{title}\n\n{summary}" + (f"\n\n{_ACTIVITY}\n{activity}" if activity else "")
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
        would otherwise cost a summary request before every request)."""
        if not assistant_indices(history):
            return False
        assert self.window
        return self._compacted_to is None or before - self._compacted_to >= self.window // 10

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
        messages = _with_question(history, question)
        max_tokens = min(self.policy.summary_max_tokens, self.max_tokens)
        limit = self.window - max_tokens if self.window else None
        for _ in range(4):
            if limit is not None:
                messages = _trimmed(messages, base, limit)
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


_ACTIVITY = "## Tool calls in the summarised part"
_ACTIVITY_LINE = re.compile(r"^- (\S+) ×(\d+)(?:: (.*))?$")


def _activity(messages: list[dict[str, Any]]) -> str:
    """What the summarised part did, from the record rather than the model's memory: each tool with
    its call count and the paths or commands it was given (the latest ten), earlier compactions'
    counts included."""
    counts: dict[str, int] = {}
    targets: dict[str, list[str]] = {}
    for message in messages:
        for block in as_blocks(message["content"]):
            if block.get("type") == "text" and block.get("text", "").startswith(SUMMARY_TITLE):
                for line in block["text"].rpartition(_ACTIVITY)[2].splitlines():
                    if found := _ACTIVITY_LINE.match(line):
                        counts[found[1]] = counts.get(found[1], 0) + int(found[2])
                        targets.setdefault(found[1], []).extend(found[3].split(", ") if found[3] else [])
            elif block.get("type") == "tool_use":
                args = block.get("input") or {}
                target = args.get("path") or args.get("command") or args.get("pattern") or ""
                name = str(block.get("name"))
                counts[name] = counts.get(name, 0) + 1
                targets.setdefault(name, []).append(str(target)[:80].replace("\n", " "))
    lines = []
    for name, count in counts.items():
        distinct = list(dict.fromkeys(t for t in reversed(targets[name]) if t))[:10][::-1]
        lines.append(f"- {name} ×{count}" + (f": {', '.join(distinct)}" if distinct else ""))
    return "\n".join(lines)


def _with_question(history: list[dict[str, Any]], question: str) -> list[dict[str, Any]]:
    """The history as last sent plus the question, appended to the last user message if there is one
    (so everything before it is the cached prefix)."""
    block = {"type": "text", "text": question}
    if history and history[-1]["role"] == "user":
        last = history[-1]
        return [*history[:-1], {**last, "content": [*as_blocks(last["content"]), block]}]
    return [*history, {"role": "user", "content": [block]}]


def _trimmed(messages: list[dict[str, Any]], base: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Messages for the summary request within ``limit`` tokens: old results cleared, then the newest
    ones, then the oldest messages left out (from an assistant message on, after a note saying so)."""
    def fits(candidate: list[dict[str, Any]]) -> bool:
        return prompt_tokens({**base, "messages": candidate}) <= limit

    if fits(messages):
        return messages
    messages = list(messages)
    assistants = assistant_indices(messages)
    for until in (assistants[-1] if assistants else 0, len(messages)):
        apply_notes(messages, clearable(messages, until))
        if fits(messages):
            return messages
    candidate = messages
    for start in assistants:
        candidate = [{"role": "user", "content": [{"type": "text", "text": _LEFT_OUT}]}, *messages[start:]]
        if fits(candidate):
            break
    return candidate  # if this does not fit either, the service will say so


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
