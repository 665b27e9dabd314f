"""Renderers without a live region: plain text for pipes and logs, JSON lines for scripts.

Assistant text goes to stdout; tool activity, retries and errors go to stderr, so
``midstream -p … > out.txt`` captures just the answer.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from typing import TextIO

from tools.events import (
    BlockStopped,
    CacheMissed,
    Event,
    TextDelta,
    ToolFinished,
    ToolGrace,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)
from tools.usage import Usage

__all__ = ["JsonRenderer", "PlainRenderer", "describe_rollback"]


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
    return line


class PlainRenderer:
    """Text as it streams, one line per tool event, no control codes."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, *, model: str = "") -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self.model = model
        self.session = Usage()
        self._lock = threading.Lock()  # tool events arrive from worker threads
        self._mid_line = False

    def show(self, event: Event) -> None:
        with self._lock:
            match event:
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
                case ToolRunning(status=status):
                    self._note(f"… {status}")
                case ToolFinished(name=name, result=result, seconds=seconds, reused=reused):
                    mark = "✗" if result.is_error else "✓"
                    first = result.content.splitlines()[0] if result.content else ""
                    how = "reused the result from before the rollback" if reused else f"{seconds:.1f} s"
                    self._note(f"{mark} {name} ({how}) {first[:100]}")
                case TurnCommitted(usage=usage):
                    reply = Usage.from_api(usage)
                    self.session += reply
                    self._note(f"  {reply.describe(self.model)}")
                case TurnRolledBack() as rolled:
                    self._note("↺ " + describe_rollback(rolled))
                case CacheMissed(message=message):
                    self._note(f"⚠ {message}")
                case TurnEnded(ok=False, message=message) if message:
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
