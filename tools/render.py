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
    Event,
    TextDelta,
    ToolFinished,
    ToolGrace,
    ToolRunning,
    TurnEnded,
    TurnRolledBack,
)

__all__ = ["JsonRenderer", "PlainRenderer"]


class PlainRenderer:
    """Text as it streams, one line per tool event, no control codes."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
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
                case ToolFinished(name=name, result=result, seconds=seconds):
                    mark = "✗" if result.is_error else "✓"
                    first = result.content.splitlines()[0] if result.content else ""
                    self._note(f"{mark} {name} ({seconds:.1f} s) {first[:100]}")
                case TurnRolledBack(reason=reason, attempt=attempt, max_attempts=most, retry_in=delay):
                    then = f"retry {attempt + 1}/{most} in {delay:.1f} s" if delay is not None else "giving up"
                    self._note(f"↺ {reason} · partial reply discarded · {then}")
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
