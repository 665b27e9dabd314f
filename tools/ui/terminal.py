"""The terminal renderer: finished lines printed once, above one live region that is redrawn.

Everything goes through one ``rich`` Console and one ``LivePrinter`` (tools/ui/printer.py), whose
promise is that what is printed stays printed: the live region holds only the unfinished line of
text, the thinking line and one line per tool call not yet finished, and it is the only thing ever
redrawn. A line of text is printed, styled as Markdown (tools/ui/lines.py), the moment its newline
arrives, and never again; a code block is printed line by line as it streams, highlighted. When a
reply stops mid-line (Ctrl-C, a drop, a rollback), the unfinished line is printed as it stood
(struck through when it was discarded), so the next output starts on a line of its own.

Calls arrive from worker threads and the printer's refresh thread; one lock orders them all.
"""

from __future__ import annotations

import contextlib
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
    RequestStarted,
    RequestUsage,
    SandboxStatus,
    TextDelta,
    ThinkingDelta,
    ToolAsking,
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
from midstream.tools.todo import Step, parse_plan
from midstream.tools.ui.diffs import fold
from midstream.tools.ui.folds import HINT, Folds
from midstream.tools.ui.lines import Blocks, visible
from midstream.tools.ui.outcomes import GROUP_AT, checklist, folded_call, folded_group, grouped, question_preview
from midstream.tools.ui.printer import LivePrinter
from midstream.tools.ui.render import (
    describe_context,
    describe_rollback,
    headless,
    outcome_line,
    shorten,
)
from midstream.tools.ui.status import WorkStatus
from rich.console import Console, Group
from rich.text import Text

__all__ = ["TerminalRenderer"]

STREAMED_WIDTH = 60  # characters of a call's input shown while it streams (the shell's status width)
_STRING_FIELD = re.compile(r'"(path|command|pattern)"\s*:\s*"((?:[^"\\]|\\.)*)"?')
TOOL_ROWS = 8  # tool lines in the live region; more are summed up in one line


@dataclass
class _ToolLine:
    name: str
    template: str = ""  # the status with {} for what of its input has streamed ("Reading {}")
    target: str = ""  # the input field that goes there
    partial: list[str] = field(default_factory=list)
    status: str = ""
    ready: bool = False  # its call is complete: it waits for an earlier call, or runs
    started: float | None = None
    last_output: str = ""
    grace_until: float | None = None
    grace_text: str = ""


class TerminalRenderer:
    """Renders loop events on a TTY: streamed text, one status line per call, usage per message."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        refresh_per_second: float = 40,
        record: bool = False,
        interactive: bool = True,
        folds: Folds | None = None,
    ) -> None:
        self.console = console or Console(highlight=False)
        # For --svg, a second console records what is printed for good (the region's redraws are
        # cursor movements a picture cannot show).
        self.recording = Console(record=True, file=io.StringIO(), width=self.console.width) if record else None
        self.folds = folds if folds is not None else Folds()  # what is folded, kept for /show, /diff, Ctrl-O
        self.interactive = interactive  # a prompt follows (else -p: failures suggest what works there)
        self._lock = threading.RLock()
        self._printer = LivePrinter(self.console, self._region_parts, self._lock,
                                    min_interval=1 / refresh_per_second, on_print=self._record)
        self._held: list[Any] | None = None  # output held back while a question is open
        self._tools: dict[str, _ToolLine] = {}
        self._group: dict[str, list[ToolFinished]] = {}  # finished calls held until the last of their kind
        self._streaming_calls: str | None = None  # the kind of call the reply is streaming now: more may follow
        self._plan: list[Step] = []  # the model's plan (the todo tool), drawn as a checklist
        self._plan_changed = False  # updated during this message: printed once when it ends
        self._partial = ""  # the unfinished line, shown raw in the region
        self._md = Blocks(lambda: self.console.width)  # fence, table rows, a paragraph's last row (lines.py)
        self._thinking: list[str] = []
        self._thinking_started: float | None = None
        self._waiting_since: float | None = None  # request sent, nothing streamed yet
        self._status = WorkStatus("esc" if interactive else "ctrl-c")
        self._streamed = False  # something of the current reply has arrived
        self._typed = ""  # what the person is typing while the turn runs (see tools/cli/typeahead.py)
        self._queued: list[str] = []  # messages typed during the turn, sent when it ends
        # Context managers entered while a question is open (the type-ahead gives stdin back).
        self.suspend_hooks: list[Callable[[], contextlib.AbstractContextManager[Any]]] = []
        self.session = Usage()  # what the session had cost when the last message ended (tools/conversation/ledger.py)
        self._context = ""  # " · context 23%" of the latest request: the footer of each message's usage line

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._commit_partial(discarded=False)
            self._printer.stop()
            if self.session.prompt_tokens or self.session.output:
                self._print(Text(f"session: {self.session.describe()}", style="dim"))
        self._printer.close()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Stop drawing while the person is asked something; output meanwhile waits, in order.

        No lock is held while the question is open: the loop keeps streaming and can still
        notice Ctrl-C, which is how a question is abandoned.
        """
        with self._lock:
            was_active = self._printer.active
            self._printer.stop()
            self._held = []
        try:
            with contextlib.ExitStack() as hooks:
                for hook in self.suspend_hooks:
                    hooks.enter_context(hook())
                yield
        finally:
            with self._lock:
                held, self._held = self._held or [], None
                if was_active:
                    self._printer.start()
                self._printer.print(*held)

    def say(self, line: str, style: str = "bold cyan") -> None:
        """A line of the program's own (not the model's), printed above the live region."""
        with self._lock:
            self._print(Text(visible(line), style=style))  # undo reports, session lists: names from the workspace

    def save_svg(self, path: str) -> None:
        if self.recording is not None:
            self.recording.save_svg(path, title="midstream")

    def typing(self, typed: str, queued: list[str]) -> None:
        """What the person types during a turn: shown at the foot of the region, never in the reply."""
        with self._lock:
            self._typed, self._queued = typed, list(queued)
            self._printer.touch(now=True)

    # -- events -------------------------------------------------------------------------------------

    def show(self, event: Event) -> None:
        with self._lock:
            self._apply(event)

    def _apply(self, event: Event) -> None:
        match event:
            case RequestStarted():
                self._commit_partial(discarded=False)
                self._streamed = False
                self._streaming_calls = None
                self._md.reset()
                self._waiting_since = time.monotonic()
                self._status.request_started()
                self._printer.start()
            case TextDelta(text=text):
                self._past_calls()  # outcomes held for more calls of their kind come before this text
                text = visible(text)
                self._came_through(text)
                first = self._waiting_since is not None
                self._waiting_since = None
                self._add_text(text)
                self._printer.touch(now=first)  # the first text is shown at once, the rest coalesced
            case ThinkingDelta(text=text):
                self._past_calls()
                self._came_through(text)
                self._waiting_since = None
                self._thinking_started = self._thinking_started or time.monotonic()
                self._thinking.append(visible(text))
                self._printer.touch()
            case BlockStopped(block_type="text"):
                self._commit_partial(discarded=False)
                self._print(*self._md.flush())
                self._md.reset()
            case BlockStopped(block_type="thinking"):
                self._end_thinking()
            case ToolCallStarted(id=call_id, name=name, template=template, target=target):
                self._waiting_since = None
                self._came_through("")
                self._commit_partial(discarded=False)
                self._tools[call_id] = _ToolLine(name, template=template, target=target)
                if name != self._streaming_calls:
                    self._past_calls(next_kind=name)
                self._printer.touch()
            case ToolInputDelta(id=call_id, partial_json=piece) if call_id in self._tools:
                self._status.streamed(piece)
                self._tools[call_id].partial.append(piece)
                self._printer.touch()
            case ToolCallReady(name="todo", input=args) if (steps := parse_plan(args.get("plan"))) is not None:
                self._plan, self._plan_changed = steps, True  # drawn in the region, printed at the end
                self._tools.pop(event.id, None)
                self._printer.touch()
            case ToolCallReady(id=call_id, name=name, status=status):
                line = self._tools.setdefault(call_id, _ToolLine(name))
                line.status, line.ready = line.status or visible(status or name), True
                self._printer.touch()
            case ToolRunning(id=call_id, name=name, status=status):
                line = self._tools.setdefault(call_id, _ToolLine(name))
                line.status, line.started, line.grace_until, line.ready = visible(status), time.monotonic(), None, True
                self._printer.touch()
            case ToolGrace(id=call_id, description=what, targets=targets, seconds=seconds):
                line = self._tools.setdefault(call_id, _ToolLine("bash"))
                shown = ", ".join(targets[:3]) + (f" +{len(targets) - 3} more" if len(targets) > 3 else "")
                line.grace_text = visible(f"{what} → {shown or 'see command'}")
                line.grace_until = time.monotonic() + seconds
                self._printer.touch()
            case ToolAsking() as asking:
                self._print(*question_preview(asking, self.folds))
            case ToolProgress(id=call_id, line=output) if call_id in self._tools:
                self._tools[call_id].last_output = visible(output)
                self._printer.touch()
            case ToolFinished() as finished:
                self._finish_tool(finished)
            case RequestUsage(usage=usage):
                self._status.billed(usage)
            case TurnCommitted():
                self._commit_partial(discarded=False)
                self._past_calls()  # the reply is whole: no more calls of any kind can come
            case CacheMissed(message=message):
                self._print(Text(f"⚠ {message}", style="yellow"))
            case HookNotice(message=message):
                self._print(Text(f"⚠ {message}", style="yellow"))
            case ContextUsed(fraction=fraction):
                self._context = f" · context {fraction:.0%}" if fraction is not None else ""
            case ContextCleared() | CompactionStarted() | Compacted() | CompactionFailed() as context:
                failed = isinstance(context, CompactionFailed)
                self._print(Text(describe_context(context), style="yellow" if failed else "dim"))
            case SandboxStatus(confined=False, message=message):
                self._print(Text(f"⚠ {message}", style="yellow"))
            case TurnRolledBack() as rolled:
                self._streaming_calls = None
                self._commit_partial(discarded=True)
                self._md.reset()  # the retry starts its text afresh, outside any code block
                self._thinking, self._thinking_started = [], None
                self._flush_groups()
                self._tools.clear()
                self._waiting_since = None  # the wait is the backoff's now, shown on the retry line
                quiet = not (self._streamed or rolled.undone or rolled.discarded or rolled.commands or rolled.kept)
                if (before := self._status.rolled_back(rolled, quiet=quiet)) is not None:
                    self._print(Text(visible(before), style="yellow"))
                if not quiet or rolled.retry_in is None:
                    said = describe_rollback(rolled, streamed=self._streamed)
                    said = f"partial reply discarded: {said}" if self._streamed else said
                    self._print(Text(visible(f"↺ {said}"), style="yellow"))
            case TurnEnded(ok=ok, message=message, usage=spent, session=session):
                self._commit_partial(discarded=False)
                self._print(*self._md.flush())
                self._md.reset()
                self._flush_groups()
                self._end_tools_left()
                if self._plan_changed:
                    self._print(*checklist(self._plan))
                    self._plan_changed = False
                self._waiting_since = None
                if (retried := self._status.came_through()) is not None:
                    self._print(Text(visible(retried), style="yellow"))
                self._status.ended()
                if not ok and message:
                    shown = message if self.interactive else headless(message)
                    self._print(Text(f"✗ {visible(shown)}", style="bold red"))
                if spent.requests:  # one usage line per message the person sent
                    self._print(Text(f"  {spent.describe()}{self._context}", style="dim"))
                self.session = session
                self._printer.stop()

    def _came_through(self, text: str) -> None:
        """Something of the reply arrived: retries before it are one printed line; the status counts it."""
        self._streamed = True
        self._status.streamed(text)
        if (retried := self._status.came_through()) is not None:
            self._print(Text(visible(retried), style="yellow"))

    # -- text ---------------------------------------------------------------------------------------

    def _add_text(self, text: str) -> None:
        if "\n" not in text:
            self._partial += text
            return
        *finished, self._partial = (self._partial + text).split("\n")
        self._print(*[shown for line in finished for shown in self._md.feed(line)])

    def _commit_partial(self, *, discarded: bool) -> None:
        """Print the unfinished line as it stands, so nothing shown is lost and nothing is glued."""
        if discarded and self._md.held:  # a table cut off: its rows as they came, struck through
            rows, self._md.held = self._md.held, []
            self._print(*[Text(row, style="dim strike") for row in rows])
        line, self._partial = self._partial, ""
        # With no line under way, a paragraph's last row may still be held (lines.py): it is printed too.
        shown = self._md.feed(line) + self._md.flush() if line else self._md.end_paragraph()
        if discarded:
            for item in shown:
                if isinstance(item, Text):
                    item.stylize("dim strike")
        self._print(*shown)

    def _end_thinking(self) -> None:
        text = "".join(self._thinking).strip()
        seconds = time.monotonic() - (self._thinking_started or time.monotonic())
        room = max(20, min(80, self.console.width - 1 - len(f"✻ thought for {seconds:.1f} s: · {HINT}") - 1))
        first = shorten(text.splitlines()[0], room) if text else ""
        folded = len(text.splitlines()) > 1 or first != " ".join(text.split())
        more = "…" if folded and not first.endswith("…") else ""
        line = Text(f"✻ thought for {seconds:.1f} s: {first}{more}", style="dim italic")
        if folded:  # kept whole, to be opened
            self.folds.add("thinking", f"Thought for {seconds:.1f} s", text)
            line.append(f" · {HINT}", style="dim")
        self._print(line)
        self._thinking, self._thinking_started = [], None

    # -- tools --------------------------------------------------------------------------------------

    def _finish_tool(self, finished: ToolFinished) -> None:
        self._tools.pop(finished.id, None)
        result = finished.result
        if finished.name == "todo" and not result.is_error:
            return  # the checklist in the region is its outcome
        if not result.is_error and not result.facts.diff and not finished.reused:
            # Calls of one kind asked for together are one line once the last of them is done ("Read 12
            # files"): held while one of the kind is listed or the reply still streams calls of that kind.
            self._group.setdefault(finished.name, []).append(finished)
            self._release_groups()
            return
        text = visible(outcome_line(finished))
        if finished.reused:
            text += " · reused from before the rollback"
        style = "dim" if text.startswith("○") else "red" if result.is_error else "green"
        line = Text(text, style=style)
        rows: list[Any] = [line]
        if result.facts.diff and not result.is_error:
            rows += self._diff(finished.done or finished.status or finished.name, result.facts.diff, finished.id)
        else:
            rows += folded_call(self.folds, finished, line)
        self._interject(*rows)

    def _interject(self, *rows: Any) -> None:
        """Rows that arrive while text streams (a call's outcome): a paragraph's row held in the region
        streamed before them, so it is printed first (the paragraph goes on below them)."""
        self._print(*self._md.end_paragraph(), *rows)

    def _calls(self, calls: list[ToolFinished]) -> list[Text]:
        """Finished calls of one kind: each line with what it returned folded under it, or one line."""
        if len(calls) >= GROUP_AT:
            return grouped(calls, hint=folded_group(self.folds, calls), width=self.console.width - 1)
        rows = []
        for call, line in zip(calls, grouped(calls), strict=True):
            rows += [line, *folded_call(self.folds, call, line)]
        return rows

    def _past_calls(self, next_kind: str | None = None) -> None:
        """The reply moved on from streaming calls of one kind (to text, another kind, or its end)."""
        self._streaming_calls = next_kind
        self._release_groups()

    def _release_groups(self) -> None:
        for name in list(self._group):
            if name != self._streaming_calls and not any(line.name == name for line in self._tools.values()):
                self._interject(*self._calls(self._group.pop(name)))

    def _flush_groups(self) -> None:
        for name in list(self._group):
            self._print(*self._calls(self._group.pop(name)))

    def _diff(self, title: str, diff: str, call_id: str = "") -> list[Text]:
        """The diff folded to its budget; a folded one is kept, to be opened whole."""
        rows, folded = fold(diff)
        if folded:
            self.folds.add("diff", title, diff, call_id)
        return rows

    def _end_tools_left(self) -> None:
        """Calls still listed when the turn ends never finished here: say so, one line each."""
        for line in self._tools.values():
            status = visible(line.status) if line.status else self._tool_status(line).removesuffix("…")
            if line.started is None:
                self._print(Text(f"○ {status}: not run (the turn was interrupted before it started)", style="dim"))
            else:
                self._print(Text(f"✗ {status}: stopped, no result", style="red"))
        self._tools.clear()

    def _tool_status(self, line: _ToolLine) -> str:
        """The call's status; while its input streams, the tool's wording with what has arrived of it."""
        if line.status:
            return visible(line.status)
        if not line.template:
            return visible(line.name) + "…"
        args = {m.group(1): _unescape(m.group(2)) for m in _STRING_FIELD.finditer("".join(line.partial))}
        # One row, as the tool words it once complete: a heredoc streaming in must not fill the region.
        value = " ".join(args.get(line.target, "").split())
        value = value if len(value) <= STREAMED_WIDTH else value[: STREAMED_WIDTH - 1] + "…"
        return visible(line.template.replace("{}", value or "…", 1)) + "…"

    def _print(self, *renderables: Any) -> None:
        if self._held is not None:
            self._held.extend(renderables)
        else:
            self._printer.print(*renderables)

    def _record(self, renderable: Any) -> None:
        if self.recording is not None:
            self.recording.print(renderable)

    # -- the live region, computed at each redraw ---------------------------------------------------

    def _region_parts(self) -> list[Any]:
        now = time.monotonic()
        parts: list[Any] = []
        animated = False
        if self._status.retrying is not None:
            parts.append(_row(self._status.retrying.row(now), "yellow"))
            animated = True
        if self._plan_changed:
            parts += checklist(self._plan)
        if self._waiting_since is not None:
            parts.append(_row(f"{_spin(now)} Thinking… {now - self._waiting_since:.1f} s", "dim"))
            animated = True
        if self._thinking:
            last = "".join(self._thinking).rstrip().splitlines()[-1:] or [""]
            parts.append(_row(f"✻ {last[0][-200:]}", "dim italic"))
        if self._partial:
            width = max(20, self.console.width)
            rows = max(1, self.console.height // 3)
            tail = self._partial[-(width * rows):]  # a very long line shows its end; it prints whole
            parts.append(self._md.live(tail))
        elif self._md.held or self._md.paragraph is not None:
            parts.append(self._md.live(""))
        for held in self._group.values():  # done, waiting for the rest of their kind: shown, not printed yet
            parts += grouped(held)
        if self._tools:
            animated = True
            lines = list(self._tools.values())
            for line in lines[:TOOL_ROWS]:
                parts.append(self._tool_row(line, now))
            if len(lines) > TOOL_ROWS:
                parts.append(_row(f"  … {len(lines) - TOOL_ROWS} more calls", "dim"))
        if self._waiting_since is None and self._status.retrying is None:
            if (status := self._status.row(now, _spin(now))) is not None:
                parts.append(_row(status, "dim"))
                animated = True
        if self._queued:
            for message in self._queued:
                parts.append(_row(f"⏎ queued: {message}", "cyan"))
        if self._typed:
            parts.append(_row(f"› {self._typed}", "bold"))
        self._printer.set_animated(animated)
        return parts

    def _tool_row(self, line: _ToolLine, now: float) -> Any:
        if line.grace_until is not None:
            left = max(0.0, line.grace_until - now)
            return _row(f"⚠ {line.grace_text} · runs in {left:.1f} s · Ctrl-C stops it", "yellow")
        if line.started is None and line.ready:  # complete, not started: behind an earlier call
            return _row(f"◦ {line.status} · waiting for an earlier call to finish", "dim")
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(_spin(now), style="cyan")
        row.append(f" {self._tool_status(line)}")
        if line.started:
            row.append(f"  {now - line.started:.1f} s", style="dim")
        if line.last_output:
            row.append(f"  {line.last_output[-60:]}", style="dim")
        return row

    def region(self) -> Group:
        """The live region as it would be drawn now (for tests and previews)."""
        with self._lock:
            return Group(*self._region_parts())


_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _spin(now: float) -> str:
    return _FRAMES[int(now * 10) % len(_FRAMES)]


def _row(text: str, style: str) -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def _unescape(fragment: str) -> str:
    try:
        return json.loads(f'"{fragment}"')
    except ValueError:
        return fragment
