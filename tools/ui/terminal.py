"""The terminal renderer: streamed Markdown above one live region of running tools.

Everything goes through one ``rich`` Console with one ``Live`` region (rich redraws it from its own
thread, ~12 times a second, which is what coalesces thousands of events a second into a few
redraws). Finished text is printed above the region as Markdown, in batches at most every
``FLUSH_INTERVAL`` seconds so a fast stream costs a bounded number of Markdown renders; until then
finished lines and the unfinished line are shown raw inside the region, so nothing appears late.
A fenced code block is printed once it closes, highlighted. Each running tool has one line in the
region (spinner, what it does, elapsed, last output line); when it ends the line is replaced by a
one-line outcome printed above.

Calls arrive from worker threads. State changes under ``_state`` (which the refresh thread also
takes, briefly, to draw the region); output produced meanwhile is queued and printed after
``_state`` is released, under ``_output`` which keeps the order. Printing while holding ``_state``
would deadlock with Live's refresh thread, which holds Live's lock while it asks for the region.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from midstream.tools.conversation.usage import Usage
from midstream.tools.ui.events import (
    BlockStopped,
    CacheMissed,
    Compacted,
    CompactionFailed,
    CompactionStarted,
    ContextCleared,
    ContextUsed,
    Event,
    RequestStarted,
    SandboxStatus,
    TextDelta,
    ThinkingDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolGrace,
    ToolInputDelta,
    ToolProgress,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)
from midstream.tools.ui.render import describe_context, describe_rollback, outcome_line
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

__all__ = ["TerminalRenderer"]

FLUSH_INTERVAL = 1 / 12
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_STRING_FIELD = re.compile(r'"(path|command|pattern)"\s*:\s*"((?:[^"\\]|\\.)*)"?')


@dataclass
class _ToolLine:
    name: str
    partial: list[str] = field(default_factory=list)
    status: str = ""
    started: float | None = None
    last_output: str = ""
    grace_until: float | None = None
    grace_text: str = ""


class TerminalRenderer:
    """Renders loop events on a TTY; ``status_for(name, args)`` words a tool's status line."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        model: str = "",
        status_for: Callable[[str, dict[str, Any]], str] | None = None,
        refresh_per_second: float = 12,
        record: bool = False,
    ) -> None:
        self.console = console or Console(highlight=False)
        # The live region's redraws are cursor movements a picture cannot show: for --svg, a second
        # console records only what is printed for good.
        self.recording = Console(record=True, file=io.StringIO(), width=self.console.width) if record else None
        self.model = model
        self._status_for = status_for or (lambda name, args: name)
        self._state = threading.RLock()
        self._output = threading.Lock()
        self._queue: list[Any] = []  # renderables, or the _START / _STOP / _REFRESH markers
        self._paused = False  # a question to the person is open (see suspended)
        self._live = Live(_Region(self), console=self.console, refresh_per_second=refresh_per_second,
                          transient=True, redirect_stdout=False, redirect_stderr=False)
        self._tools: dict[str, _ToolLine] = {}
        self._pending: list[str] = []  # finished lines not yet printed as Markdown
        self._partial = ""  # the unfinished line
        self._fence: list[str] | None = None  # lines of an open code block
        self._thinking: list[str] = []
        self._thinking_started: float | None = None
        self._waiting_since: float | None = None  # request sent, nothing streamed yet
        self._last_flush = 0.0
        self.session = Usage()
        self._context = ""  # " · context 23%" of the latest request: the footer of each reply's usage line

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._output:
            with self._state:
                self._stop_live()
                if self.session.prompt_tokens or self.session.output:
                    self._print(Text(f"session: {self.session.describe(self.model)}", style="dim"))
            self._drain()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Stop drawing while the person is asked something; output meanwhile waits, in order.

        No lock is held while the question is open: the loop keeps streaming and can still
        notice Ctrl-C, which is how a question is abandoned.
        """
        with self._output:
            was_running = self._live.is_started
            if was_running:
                self._live.stop()
            self._paused = True
        try:
            yield
        finally:
            with self._output:
                self._paused = False
                if was_running and not self._live.is_started:
                    self._live.start()
                self._drain()

    def _stop_live(self) -> None:
        self._queue.append(_STOP)

    def _drain(self) -> None:
        """Print what the last event produced; called holding ``_output`` but not ``_state``."""
        if self._paused:
            return  # printed, in order, when the question is answered
        with self._state:
            queue, self._queue = self._queue, []
        for item in queue:
            if item is _STOP:
                if self._live.is_started:
                    self._live.stop()
            elif item is _START:
                if not self._live.is_started:
                    self._live.start()
            elif item is _REFRESH:
                if self._live.is_started:
                    self._live.refresh()
            else:
                self.console.print(item)
                if self.recording is not None:
                    self.recording.print(item)

    def say(self, line: str, style: str = "bold cyan") -> None:
        """A line of the program's own (not the model's), printed above the live region."""
        with self._output:
            with self._state:
                self._print(Text(line, style=style))
            self._drain()

    def save_svg(self, path: str) -> None:
        if self.recording is not None:
            self.recording.save_svg(path, title="midstream")

    # -- events -------------------------------------------------------------------------------------

    def show(self, event: Event) -> None:
        with self._output:
            with self._state:
                self._apply(event)
            self._drain()

    def _apply(self, event: Event) -> None:
        match event:
            case RequestStarted():
                self._waiting_since = time.monotonic()
                self._queue.append(_START)
            case TextDelta(text=text):
                if self._waiting_since is not None:  # the first text: show it now, not at the next tick
                    self._waiting_since = None
                    self._queue.append(_REFRESH)
                self._add_text(text)
            case ThinkingDelta(text=text):
                self._waiting_since = None
                self._thinking_started = self._thinking_started or time.monotonic()
                self._thinking.append(text)
            case BlockStopped(block_type="text"):
                self._end_text_block()
            case BlockStopped(block_type="thinking"):
                self._end_thinking()
            case ToolCallStarted(id=call_id, name=name):
                self._waiting_since = None
                self._flush(force=True)
                self._tools[call_id] = _ToolLine(name)
            case ToolInputDelta(id=call_id, partial_json=piece) if call_id in self._tools:
                self._tools[call_id].partial.append(piece)
            case ToolCallReady(id=call_id, name=name, input=args) if call_id in self._tools:
                self._tools[call_id].status = self._status_for(name, args)
            case ToolRunning(id=call_id, name=name, status=status):
                line = self._tools.setdefault(call_id, _ToolLine(name))
                line.status, line.started, line.grace_until = status, time.monotonic(), None
            case ToolGrace(id=call_id, description=what, targets=targets, seconds=seconds):
                line = self._tools.setdefault(call_id, _ToolLine("bash"))
                shown = ", ".join(targets[:3]) + (f" +{len(targets) - 3} more" if len(targets) > 3 else "")
                line.grace_text = f"{what} → {shown or 'see command'}"
                line.grace_until = time.monotonic() + seconds
            case ToolProgress(id=call_id, line=output) if call_id in self._tools:
                self._tools[call_id].last_output = output
            case ToolFinished() as finished:
                self._finish_tool(finished)
            case TurnCommitted(usage=usage):
                self._flush(force=True)
                reply = Usage.from_api(usage)
                self.session += reply
                if reply.prompt_tokens or reply.output:
                    self._print(Text(f"  {reply.describe(self.model)}{self._context}", style="dim"))
            case CacheMissed(message=message):
                self._print(Text(f"⚠ {message}", style="yellow"))
            case ContextUsed(fraction=fraction):
                self._context = f" · context {fraction:.0%}" if fraction is not None else ""
            case ContextCleared() | CompactionStarted() | Compacted() | CompactionFailed() as context:
                self.session += Usage.from_api(getattr(context, "usage", {}))  # the summary request
                failed = isinstance(context, CompactionFailed)
                self._print(Text(describe_context(context), style="yellow" if failed else "dim"))
            case SandboxStatus(confined=False, message=message):
                self._print(Text(f"⚠ {message}", style="yellow"))
            case TurnRolledBack() as rolled:
                shown = "\n".join([*self._pending, *(self._fence or []), self._partial]).strip()
                if shown:  # it stays on screen, struck through, so the person knows it was thrown away
                    self._print(Text(shown, style="dim strike"))
                self._discard_partial()
                self._print(Text(f"↺ partial reply discarded: {describe_rollback(rolled)}", style="yellow"))
            case TurnEnded(ok=ok, message=message):
                self._flush(force=True)
                self._tools.clear()
                self._waiting_since = None
                if not ok and message:
                    self._print(Text(f"✗ {message}", style="bold red"))
                self._stop_live()

    # -- text ---------------------------------------------------------------------------------------

    def _add_text(self, text: str) -> None:
        if "\n" not in text:
            self._partial += text
            return
        head, *middle, tail = (self._partial + text).split("\n")
        self._partial = tail
        for line in [head, *middle]:
            self._finished_line(line)
        self._flush()

    def _finished_line(self, line: str) -> None:
        if self._fence is not None:
            self._fence.append(line)
            if _FENCE.match(line):  # the block closed: print it whole, highlighted
                self._flush(force=True, markdown="\n".join(self._fence))
                self._fence = None
        elif _FENCE.match(line):
            self._flush(force=True)
            self._fence = [line]
        else:
            self._pending.append(line)

    def _flush(self, force: bool = False, markdown: str | None = None) -> None:
        now = time.monotonic()
        if self._pending and (force or now - self._last_flush >= FLUSH_INTERVAL):
            text = "\n".join(self._pending)
            self._pending = []
            self._last_flush = now
            if text.strip():
                self._print(Markdown(text))
            if text.endswith("\n") or not text.strip():
                self._print(Text(""))  # a blank line at a batch edge would otherwise vanish
        if markdown is not None:
            self._print(Markdown(markdown))

    def _end_text_block(self) -> None:
        if self._partial:
            self._finished_line(self._partial)
            self._partial = ""
        if self._fence is not None:  # a block that never closed is shown as it is
            self._pending.extend(self._fence)
            self._fence = None
        self._flush(force=True)

    def _discard_partial(self) -> None:
        self._pending, self._partial, self._fence = [], "", None
        self._thinking, self._thinking_started = [], None
        self._tools.clear()

    def _end_thinking(self) -> None:
        text = "".join(self._thinking).strip()
        seconds = time.monotonic() - (self._thinking_started or time.monotonic())
        first = text.splitlines()[0][:80] if text else ""
        self._print(Text(f"✻ thought for {seconds:.1f} s: {first}{'…' if len(text) > len(first) else ''}",
                         style="dim italic"))
        self._thinking, self._thinking_started = [], None

    # -- tools --------------------------------------------------------------------------------------

    def _finish_tool(self, finished: ToolFinished) -> None:
        line = self._tools.pop(finished.id, None)
        status = (line.status if line and line.status else "") or self._status_for(finished.name, {})
        result = finished.result
        text = outcome_line(status, result.content, result.is_error, finished.seconds)
        if finished.reused:
            text += " · reused from before the rollback"
        self._print(Text(text, style="red" if result.is_error else "green"))
        if status.startswith("Editing") and not result.is_error:
            diff = [x for x in result.content.splitlines()[1:] if not x.startswith(("---", "+++"))][:12]
            for row in diff:
                style = "green" if row.startswith("+") else "red" if row.startswith("-") else "dim"
                self._print(Text(f"    {row}", style=style))

    def _tool_status(self, call_id: str, line: _ToolLine) -> str:
        if line.status:
            return line.status
        args = {m.group(1): _unescape(m.group(2)) for m in _STRING_FIELD.finditer("".join(line.partial))}
        return self._status_for(line.name, args) + "…"

    def _print(self, renderable: Any) -> None:
        self._queue.append(renderable)

    # -- the live region, computed at each refresh ---------------------------------------------------

    def region(self) -> Group:
        with self._state:
            now = time.monotonic()
            parts: list[Any] = []
            if self._waiting_since is not None:
                parts.append(Spinner("dots", Text(f"Thinking… {now - self._waiting_since:.1f} s", style="dim")))
            if self._thinking:
                last = "".join(self._thinking).rstrip().splitlines()[-1:] or [""]
                parts.append(Text(f"✻ {last[0][-100:]}", style="dim italic"))
            if self._tools:
                table = Table.grid(padding=(0, 1))
                for call_id, line in list(self._tools.items()):
                    if line.grace_until is not None:
                        left = max(0.0, line.grace_until - now)
                        table.add_row(Text("⚠", style="bold yellow"),
                                      Text(f"{line.grace_text} · runs in {left:.1f} s · Ctrl-C stops it",
                                           style="yellow"))
                        continue
                    elapsed = f"{now - line.started:.1f} s" if line.started else ""
                    row = Text(self._tool_status(call_id, line))
                    if elapsed:
                        row.append(f"  {elapsed}", style="dim")
                    if line.last_output:
                        row.append(f"  {line.last_output[-60:]}", style="dim")
                    table.add_row(Spinner("dots", style="cyan"), row)
                parts.append(table)
            raw = [*self._pending, *(self._fence or [])][-12:]
            if raw or self._partial:
                parts.insert(0, Text("\n".join([*raw, self._partial])))
            return Group(*parts)


_START, _STOP, _REFRESH = object(), object(), object()


class _Region:
    """What Live draws: asks the renderer for the current region at each refresh."""

    def __init__(self, renderer: TerminalRenderer) -> None:
        self._renderer = renderer

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._renderer.region()


def _unescape(fragment: str) -> str:
    try:
        return json.loads(f'"{fragment}"')
    except ValueError:
        return fragment
