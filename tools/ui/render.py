"""Renderers without a live region: plain text for pipes and logs, JSON lines for scripts.

Assistant text goes to stdout; tool activity, retries and errors go to stderr, so
``midstream -p … > out.txt`` captures just the answer.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import threading
from typing import TextIO

from midstream.tools.conversation.usage import Usage
from midstream.tools.ui.events import (
    BlockStopped,
    CacheMissed,
    Event,
    RequestStarted,
    TextDelta,
    ToolCallReady,
    ToolFinished,
    ToolGrace,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)

__all__ = ["JsonRenderer", "PlainRenderer", "SummaryRenderer", "describe_rollback", "outcome_line"]


_NUMBERED_LINE = re.compile(r"^ *\d+\t")
_PAST = {"Reading": "Read", "Writing": "Wrote", "Editing": "Edited", "Listing": "Listed", "Finding": "Found",
         "Searching": "Searched", "Running": "Ran", "Recording": "Recorded"}


def outcome_line(status: str, content: str, is_error: bool, seconds: float) -> str:
    """``✓ Read src/app.py (120 lines)`` or ``✗ Ran `pytest -q`: exit 1 (3 failed)``."""
    verb, _, rest = status.partition(" ")
    done = f"{_PAST.get(verb, verb)} {rest}".strip()
    lines = content.splitlines()
    if is_error and "grace window" in content:
        return f"✗ {done}: stopped by the person in its grace window, nothing ran"
    if is_error:
        status_line = next((line for line in reversed(lines) if line.startswith("[exit status")), "")
        exit_code = status_line.strip("[]").replace("exit status ", "exit ") if status_line else ""
        body = [line for line in lines if line.strip() and not line.startswith("[")]
        counts = re.search(r"\d+ failed(, \d+ passed)?", content)
        detail = counts.group(0) if counts else (body[-1][:80] if body else "")
        if not exit_code:
            detail, exit_code = (lines[0][:100] if lines else ""), "error"
        return f"✗ {done}: {exit_code}" + (f" ({detail})" if detail else "")
    if verb == "Reading":
        numbered = sum(1 for line in lines if _NUMBERED_LINE.match(line))
        return f"✓ {done} ({numbered} line{'s' * (numbered != 1)})"
    if verb == "Running":
        return f"✓ {done} ({seconds:.1f} s)"
    return f"✓ {done}" + (f" · {lines[0]}" if lines and verb not in {"Editing"} else "")



def describe_rollback(event: TurnRolledBack) -> str:
    """``stream dropped after 3.1 s · rolled back (1 edit undone, 2 reads discarded) · retry 2/5 in 4 s``."""
    undone = [f"{len(event.undone)} edit{'s' * (len(event.undone) != 1)} undone"] if event.undone else []
    reads = [f"{event.discarded} read{'s' * (event.discarded != 1)} discarded"] if event.discarded else []
    what = f"rolled back ({', '.join(undone + reads)})" if undone or reads else "rolled back"
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


class PlainRenderer:
    """No control codes: one line per tool event on stderr; text on stdout.

    ``stream_text`` (a person reading a plain terminal) writes text as it streams. Without it
    (``-p``, where a script reads stdout) stdout gets only the final reply's text, once, and the
    narration of replies that ended in tool calls goes to stderr with the tool lines.
    """

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, *, model: str = "",
                 stream_text: bool = True) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self.model = model
        self.stream_text = stream_text
        self.session = Usage()
        self._lock = threading.Lock()  # tool events arrive from worker threads
        self._mid_line = False
        self._reply: list[str] = []  # this reply's text, when not streaming it
        self._final: str | None = None
        self._statuses: dict[str, str] = {}  # call id -> "Reading src/app.py"

    def show(self, event: Event) -> None:
        with self._lock:
            match event:
                case TextDelta(text=text) if not self.stream_text:
                    self._reply.append(text)
                case TextDelta(text=text):
                    self._out.write(text)
                    self._out.flush()
                    self._mid_line = not text.endswith("\n")
                case BlockStopped(block_type="text") if self._mid_line:
                    self._out.write("\n")
                    self._out.flush()
                    self._mid_line = False
                case ToolGrace(description=what, targets=targets, seconds=seconds):
                    shown = ", ".join(targets[:5]) + (f" and {len(targets) - 5} more" if len(targets) > 5 else "")
                    self._note(f"⚠ destructive: {what} → {shown or 'see command'} · runs in {seconds:g} s "
                               "(Ctrl-C stops it)")
                case ToolRunning(id=call_id, status=status):
                    self._statuses[call_id] = status
                    self._note(f"… {status}")
                case ToolFinished(id=call_id, name=name, result=result, seconds=seconds, reused=reused):
                    status = self._statuses.pop(call_id, name)
                    line = outcome_line(status, result.content, result.is_error, seconds)
                    self._note(line + (" · reused from before the rollback" if reused else ""))
                case TurnCommitted(stop_reason=reason, usage=usage):
                    reply = Usage.from_api(usage)
                    self.session += reply
                    text, self._reply = "".join(self._reply).strip(), []
                    if reason in ("tool_use", "pause_turn"):
                        if text:
                            self._note("· " + text.replace("\n", "\n· "))
                    else:
                        self._final = text
                    self._note(f"  {reply.describe(self.model)}")
                case TurnRolledBack() as rolled:
                    self._reply = []
                    if self._mid_line:  # the partial reply stays on screen, marked
                        self._out.write(" [discarded]\n")
                        self._out.flush()
                        self._mid_line = False
                    self._note("↺ " + describe_rollback(rolled))
                case CacheMissed(message=message):
                    self._note(f"⚠ {message}")
                case TurnEnded(ok=ok, message=message):
                    final = self._final if self._final is not None else "".join(self._reply).strip()
                    if not self.stream_text and final:
                        self._out.write(final + "\n")
                        self._out.flush()
                    self._final, self._reply = None, []
                    if not ok and message:
                        self._note(f"midstream: {message}")

    def _note(self, line: str) -> None:
        self._err.write(line + "\n")
        self._err.flush()


class JsonRenderer:
    """One JSON object per event on stdout, for scripts and editors."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._lock = threading.Lock()

    def show(self, event: Event) -> None:
        record = {"event": type(event).__name__, **dataclasses.asdict(event)}
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


class SummaryRenderer:
    """For ``--output-format json``: collects the session and prints one JSON object at the end."""

    def __init__(self, out: TextIO | None = None, *, model: str = "") -> None:
        self._out = out or sys.stdout
        self.model = model
        self.session = Usage()
        self._lock = threading.Lock()
        self._reply: list[str] = []
        self._final = ""
        self._calls: dict[str, dict[str, object]] = {}
        self._requests = 0

    def show(self, event: Event) -> None:
        with self._lock:
            match event:
                case RequestStarted():
                    self._requests += 1
                case TextDelta(text=text):
                    self._reply.append(text)
                case ToolCallReady(id=call_id, name=name, input=args):
                    self._calls[call_id] = {"id": call_id, "name": name, "input": args}
                case ToolFinished(id=call_id, name=name, result=result, seconds=seconds, reused=reused):
                    self._calls.setdefault(call_id, {"id": call_id, "name": name})
                    self._calls[call_id].update(is_error=result.is_error, seconds=round(seconds, 3), reused=reused,
                                                output=result.content[:2000])
                case TurnRolledBack():
                    self._reply = []
                case TurnCommitted(usage=usage):
                    self.session += Usage.from_api(usage)
                    self._final, self._reply = "".join(self._reply), []
                case TurnEnded(stop_reason=reason, ok=ok, message=message):
                    summary = {
                        "ok": ok, "stop_reason": reason, "error": message or None,
                        "result": self._final or "".join(self._reply),
                        "usage": dataclasses.asdict(self.session) | {"hit_ratio": self.session.hit_ratio},
                        "cost_usd": self.session.cost(self.model), "requests": self._requests,
                        "tool_calls": list(self._calls.values()),
                    }
                    self._out.write(json.dumps(summary, ensure_ascii=False) + "\n")
                    self._out.flush()
