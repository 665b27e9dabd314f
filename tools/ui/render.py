"""Renderers without a live region: plain text for pipes and logs, JSON lines for scripts.

Assistant text goes to stdout; tool activity, retries and errors go to stderr, so
``midstream -p … > out.txt`` captures just the answer.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from midstream.tools.events import (
    BlockStopped,
    CacheMissed,
    Compacted,
    CompactionFailed,
    CompactionStarted,
    ContextCleared,
    ContextUsed,
    Event,
    HookNotice,
    Quiet,
    RequestStarted,
    SandboxStatus,
    TextDelta,
    ToolAsking,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolGrace,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)
from midstream.tools.ui.sanitise import shown
from midstream.tools.wire.errors import RETRY_HINT

__all__ = [
    "PlainRenderer", "SummaryRenderer", "describe_context", "describe_rollback", "diff_rows",
    "headless", "outcome_line", "preview_rows", "shorten",
]


def outcome_line(finished: ToolFinished) -> str:
    """``✓ Read src/app.py (120 lines)`` or ``✗ Ran `pytest -q`: exit 1 (3 failed)``, from the result's facts."""
    status = finished.status or finished.name
    done = finished.done or status
    result, facts = finished.result, finished.result.facts
    if facts.ended == "not_run":
        return f"○ {status}: not run (the turn was interrupted before it started)"
    if facts.ended == "stopped":
        return f"✗ {done}: stopped by the person in its grace window, nothing ran"
    if facts.ended == "discarded":  # ran in isolation; what it changed never reached the workspace
        return f"✗ {done}: {shorten(facts.detail, 160)}"
    if result.is_error:
        if facts.exit_status is None:  # the tool refused or failed before anything ran: say what it tried
            first = result.content.splitlines()[:1]
            return f"✗ {status}: {_first_sentence(first[0]) if first else 'failed'}"
        detail = shorten(facts.detail, 80)
        # A timed-out command died of our SIGTERM: "killed by SIGTERM" would hide why.
        how = "timed out" if facts.ended == "timed_out" else _exit_words(facts.exit_status)
        return f"✗ {done}: {how}" + (f" ({detail})" if detail else "")
    if facts.exit_status is not None:
        return f"✓ {done} ({finished.seconds:.1f} s)" + (f" · applied {facts.applied}" if facts.applied else "")
    return f"✓ {done}" + (f" ({facts.detail})" if facts.detail else "")


def _first_sentence(text: str, limit: int = 240) -> str:
    """A message written for the model, shown to the person: its first sentence whole, not cut mid-way."""
    end = re.search(r"[.!?](\s|$)", text)
    sentence = text[:end.end()].strip() if end else text
    return shorten(sentence, limit)


def _exit_words(code: int) -> str:
    """``exit 1``; a negative status is the signal that killed it: ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary with an ellipsis, never mid-word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def diff_rows(diff: str, limit: int) -> tuple[list[str], int, int, int]:
    """A unified diff's rows to show (file headers dropped), how many more rows there are, and the
    lines added and removed in all."""
    rows = [row for row in diff.splitlines() if not row.startswith(("---", "+++"))]
    added = sum(1 for row in rows if row.startswith("+"))
    removed = sum(1 for row in rows if row.startswith("-"))
    return rows[:limit], max(0, len(rows) - limit), added, removed


def preview_rows(name: str, args: dict[str, Any], workspace: Path, limit: int = 12) -> list[str]:
    """What a write would do, for the question in ask mode: an edit's or overwrite's diff, or a new
    file's size and first lines. Each row is plain text starting with +, - or a space."""
    path = args.get("path")
    if name not in ("edit_file", "write_file") or not isinstance(path, str):
        return []
    target = (workspace / path) if not Path(path).is_absolute() else Path(path)
    try:
        before = target.read_text("utf-8", errors="replace") if target.is_file() else None
    except OSError:
        before = None
    if name == "edit_file":
        old, new = str(args.get("old_string", "")), str(args.get("new_string", ""))
        if before is None or not old or old not in before:
            return [f"  (cannot preview: {path} does not contain old_string as given)"]
        after = before.replace(old, new) if args.get("replace_all") else before.replace(old, new, 1)
    else:
        after = str(args.get("content", ""))
        if before is None:
            lines = after.splitlines()
            head = [f"+{line}" for line in lines[:limit]]
            rest = [f"… {len(lines) - limit} more lines"] if len(lines) > limit else []
            return [f"  new file, {len(lines)} line{'s' * (len(lines) != 1)} ({len(after.encode()):,} bytes)", *head,
                    *rest]
    diff = "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=2))
    shown, more, added, removed = diff_rows(diff, limit)
    tail = [f"… {more} more lines (+{added} -{removed} in all)"] if more else []
    return [*shown, *tail] if shown else ["  (no change)"]


HEADLESS_RETRY_HINT = " · `midstream --continue` then /retry sends it again"


def headless(message: str) -> str:
    """A failure message for a run without the prompt (-p), where /retry cannot be typed."""
    return message.replace(RETRY_HINT, HEADLESS_RETRY_HINT)


def describe_rollback(event: TurnRolledBack, streamed: bool = True) -> str:
    """``stream dropped after 3.1 s · rolled back (1 edit undone, 2 reads discarded) · retry 2/5 in 4 s``.

    ``streamed``: something of the reply had arrived; else there was nothing to roll back."""
    undone = [f"{len(event.undone)} edit{'s' * (len(event.undone) != 1)} undone"] if event.undone else []
    reads = [f"{event.discarded} read{'s' * (event.discarded != 1)} discarded"] if event.discarded else []
    what = f"rolled back ({', '.join(undone + reads)})" if undone or reads else "rolled back"
    if not streamed and not (undone or reads):
        what = "nothing had arrived"
    if event.retry_in is not None:
        then = f"retry {event.attempt + 1}/{event.max_attempts} in {event.retry_in:.1f} s"
    else:
        then = f"gave up after {event.attempt} attempt{'s' * (event.attempt != 1)}"
    line = f"{event.reason} after {event.elapsed:.1f} s · {what} · {then}"
    if event.commands:
        line += " · already ran, cannot be undone: " + "; ".join(f"`{c}`" for c in event.commands)
    if event.kept:
        line += " · left as a command changed them: " + ", ".join(event.kept)
    return line


def describe_context(event: ContextCleared | CompactionStarted | Compacted | CompactionFailed) -> str:
    """One line about the context window: what was cleared or compacted, and what was kept."""
    match event:
        case ContextCleared(results=n, inputs=inputs, before=before, after=after):
            what = [f"{n} old tool result{'s' * (n != 1)}"] * bool(n or not inputs)
            what += [f"{inputs} long tool input{'s' * (inputs != 1)}"] * bool(inputs)
            return (f"✓ cleared {' and '.join(what)} to save context: {before:,} → {after:,} tokens "
                    "(the model can fetch them again)")
        case CompactionStarted(tokens=tokens):
            return f"compacting the conversation… ({tokens:,} tokens)"
        case Compacted(before=before, after=after, summarised=summarised, kept=kept):
            return (f"✓ compacted the conversation: {before:,} → {after:,} tokens · {summarised} "
                    f"message{'s' * (summarised != 1)} summarised, the last {kept} kept verbatim")
        case CompactionFailed(message=message):
            return f"⚠ could not compact the conversation: {message}"
    raise TypeError(event)


class PlainRenderer(Quiet):
    """No control codes: one line per tool event on stderr; text on stdout.

    ``stream_text`` (a person reading a plain terminal) writes text as it streams. Without it
    (``-p``, where a script reads stdout) stdout gets only the final reply's text, once, and the
    narration of replies that ended in tool calls goes to stderr with the tool lines.
    """

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, *, stream_text: bool = True) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self.stream_text = stream_text
        self._lock = threading.Lock()  # tool events arrive from worker threads
        self._mid_line = False
        self._reply: list[str] = []  # this reply's text, when not streaming it
        self._final: str | None = None
        self._context = ""  # " · context 23%" of the latest request, when the window is known
        self._waiting: dict[str, str] = {}  # calls complete in the stream, not started: "edit_file a.py"
        self._streamed = False  # something of the current reply has arrived

    def show(self, event: Event) -> None:
        with self._lock:
            match event:
                case RequestStarted():
                    self._streamed = False
                case TextDelta(text=text) if not self.stream_text:
                    self._streamed = True
                    self._reply.append(text)
                case TextDelta(text=text):
                    self._streamed = True
                    self._out.write(shown(text))
                    self._out.flush()
                    self._mid_line = not text.endswith("\n")
                case BlockStopped(block_type="text") if self._mid_line:
                    self._out.write("\n")
                    self._out.flush()
                    self._mid_line = False
                case ToolCallStarted():  # what the reply said so far comes before its tool lines
                    self._streamed = True
                    self._narrate()
                case ToolGrace(description=what, targets=targets, seconds=seconds):
                    listed = ", ".join(targets[:5]) + (f" and {len(targets) - 5} more" if len(targets) > 5 else "")
                    self._note(f"⚠ destructive: {what} → {listed or 'see command'} · runs in {seconds:g} s "
                               "(Ctrl-C stops it)")
                case ToolAsking(name=name, input=args, workspace=workspace, changes=changes):
                    for row in changes or preview_rows(name, args, Path(workspace)):
                        self._note(f"    {row}")
                case ToolCallReady(id=call_id, name=name, input=args):
                    target = args.get("path") or args.get("command") or args.get("pattern") or ""
                    self._waiting[call_id] = f"{name} {shorten(str(target), 60)}".strip()
                case ToolRunning(id=call_id, status=status):
                    self._waiting.pop(call_id, None)
                    self._note(f"… {status}")
                case ToolFinished(id=call_id, reused=reused) as finished:
                    self._waiting.pop(call_id, None)
                    self._note(outcome_line(finished) + (" · reused from before the rollback" if reused else ""))
                case TurnCommitted(stop_reason=reason):
                    if reason in ("tool_use", "pause_turn"):
                        self._narrate()
                    else:
                        self._final, self._reply = "".join(self._reply).strip(), []
                case TurnRolledBack() as rolled:
                    self._reply = []
                    self._waiting.clear()
                    if self._mid_line:  # the partial reply stays on screen, marked
                        self._out.write(" [discarded]\n")
                        self._out.flush()
                        self._mid_line = False
                    self._note("↺ " + describe_rollback(rolled, self._streamed))
                case SandboxStatus(confined=False, message=message):
                    self._note(f"midstream: warning: {message}")
                case CacheMissed(message=message):
                    self._note(f"⚠ {message}")
                case HookNotice(message=message):
                    self._note(f"midstream: {message}")
                case ContextUsed(fraction=fraction):
                    self._context = f" · context {fraction:.0%}" if fraction is not None else ""
                case ContextCleared() | CompactionStarted() | Compacted() | CompactionFailed() as context:
                    self._note(describe_context(context))
                case TurnEnded(ok=ok, message=message, usage=spent):
                    for call in self._waiting.values():  # cancelled before they started: say so
                        self._note(f"○ {call}: not run (the turn was interrupted before it started)")
                    self._waiting.clear()
                    final = self._final if self._final is not None else "".join(self._reply).strip()
                    if not self.stream_text and final:
                        self._out.write(shown(final) + "\n")
                        self._out.flush()
                    self._final, self._reply = None, []
                    if spent.requests:  # one usage line per message; a failure stays the last line
                        self._note(f"  {spent.describe()}{self._context}")
                    if not ok and message:
                        self._note(f"midstream: {message if self.stream_text else headless(message)}")

    def _narrate(self) -> None:
        """Text of a reply that goes on with tool calls: to stderr, before the calls' lines."""
        text, self._reply = "".join(self._reply).strip(), []
        if text and not self.stream_text:
            self._note("· " + text.replace("\n", "\n· "))

    def _note(self, line: str) -> None:
        self._err.write(shown(line) + "\n")  # commands, file names, model text: shown, never obeyed
        self._err.flush()


class SummaryRenderer(Quiet):
    """For ``--output-format json``: collects the session and prints one JSON object at the end.

    Besides our own fields it carries those Claude Code's ``-p --output-format json`` has, so scripts
    written for it work: type, subtype, is_error, result, session_id, duration_ms, num_turns,
    total_cost_usd, and usage with the API's field names.
    """

    def __init__(self, out: TextIO | None = None, *, session_id: str = "") -> None:
        self._out = out or sys.stdout
        self.session_id = session_id
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._reply: list[str] = []
        self._final = ""
        self._calls: dict[str, dict[str, object]] = {}
        self._requests = 0
        self._context: list[dict[str, object]] = []  # clearings and compactions
        self._turns = 0  # committed replies: Claude Code's num_turns
        self._sandbox: dict[str, object] | None = None
        self.before_result: Callable[[], object] | None = None  # e.g. the sandbox status still being told

    def show(self, event: Event) -> None:
        if isinstance(event, TurnEnded) and self.before_result is not None:
            self.before_result()  # outside the lock: what it waits for shows its own event
        with self._lock:
            match event:
                case RequestStarted():
                    self._requests += 1
                case SandboxStatus() as status:
                    self._sandbox = dataclasses.asdict(status)
                case TextDelta(text=text):
                    self._reply.append(text)
                case ToolCallReady(id=call_id, name=name, input=args):
                    self._calls[call_id] = {"id": call_id, "name": name, "input": args}
                case ToolFinished(id=call_id, name=name, result=result, seconds=seconds, reused=reused):
                    self._calls.setdefault(call_id, {"id": call_id, "name": name})
                    self._calls[call_id].update(is_error=result.is_error, seconds=round(seconds, 3), reused=reused,
                                                output=result.content[:2000], ended=result.facts.ended,
                                                exit_status=result.facts.exit_status)
                case TurnRolledBack():
                    self._reply = []
                case TurnCommitted():
                    self._final, self._reply = "".join(self._reply), []
                    self._turns += 1
                case HookNotice(message=message):  # for the person, not the script reading stdout
                    print(f"midstream: {message}", file=sys.stderr, flush=True)
                case ContextCleared() | Compacted() | CompactionFailed() as context:
                    self._context.append({"event": type(context).__name__, **dataclasses.asdict(context)})
                case TurnEnded(stop_reason=reason, ok=ok, message=message, session=total):
                    cost = total.dollars if total.requests else None  # priced by the model each reply named
                    summary = {
                        "type": "result", "subtype": _subtype(ok, reason), "is_error": not ok,
                        "session_id": self.session_id, "duration_ms": round((time.monotonic() - self._started) * 1000),
                        "num_turns": self._turns, "total_cost_usd": cost,
                        "ok": ok, "stop_reason": reason, "error": message or None,
                        "result": self._final or "".join(self._reply),
                        "usage": dataclasses.asdict(total) | {
                            "hit_ratio": total.hit_ratio, "input_tokens": total.input, "output_tokens": total.output,
                            "cache_read_input_tokens": total.cache_read,
                            "cache_creation_input_tokens": total.cache_write + total.cache_write_1h},
                        "cost_usd": cost, "requests": self._requests,
                        "tool_calls": list(self._calls.values()), "context": self._context, "sandbox": self._sandbox,
                    }
                    self._out.write(json.dumps(summary, ensure_ascii=False) + "\n")
                    self._out.flush()


def _subtype(ok: bool, stop_reason: str | None) -> str:
    """Claude Code's words for how a run ended."""
    if ok:
        return "success"
    return "error_max_turns" if stop_reason == "max_requests" else "error_during_execution"
