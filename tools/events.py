"""What the loop tells a renderer: one small frozen dataclass per kind of event.

Renderers handle these with ``match``. Events about running tools arrive from worker threads, so
a renderer must be safe to call from several threads at once.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from midstream.tools.conversation.usage import Usage
from midstream.tools.registry import ToolResult

__all__ = [
    "BlockStopped",
    "CacheMissed",
    "Compacted",
    "CompactionFailed",
    "CompactionStarted",
    "ContextCleared",
    "ContextUsed",
    "Event",
    "HookNotice",
    "MessageSent",
    "QuestionAsked",
    "QuestionClosed",
    "Quiet",
    "Renderer",
    "RequestStarted",
    "SandboxStatus",
    "RequestUsage",
    "TextDelta",
    "ThinkingDelta",
    "ToolCallReady",
    "ToolAsking",
    "ToolCallStarted",
    "ToolFinished",
    "ToolGrace",
    "ToolInputDelta",
    "ToolProgress",
    "ToolRunning",
    "TurnCommitted",
    "TurnEnded",
    "TurnRolledBack",
]


@dataclass(frozen=True)
class MessageSent:
    """The person's message went into history; the turn for it begins."""

    text: str


@dataclass(frozen=True)
class QuestionAsked:
    """A question waits for the person (tools/questions.py): any surface may answer it."""

    id: str
    call_id: str
    text: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class QuestionClosed:
    """A question was answered (``by`` the terminal, the browser, or ``cancelled``): every surface closes it."""

    id: str
    call_id: str
    answer: str
    by: str


@dataclass(frozen=True)
class RequestStarted:
    attempt: int
    request_number: int


@dataclass(frozen=True)
class RequestUsage:
    """What one answered request was billed, committed or not; ``model`` is the one the server reported."""

    model: str
    usage: dict[str, Any]


@dataclass(frozen=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True)
class ThinkingDelta:
    index: int
    text: str


@dataclass(frozen=True)
class BlockStopped:
    index: int
    block_type: str


@dataclass(frozen=True)
class ToolCallStarted:
    """A tool_use block began: the name is known, the input is still streaming.

    ``template`` is the call's status with ``{}`` where the input field ``target`` goes ("Reading {}"),
    so a renderer can word the call while its input streams in."""

    index: int
    id: str
    name: str
    template: str = ""
    target: str = ""


@dataclass(frozen=True)
class ToolInputDelta:
    id: str
    partial_json: str


@dataclass(frozen=True)
class ToolCallReady:
    """A tool_use block ended: the input is parsed (or ``error`` says why it could not be)."""

    index: int
    id: str
    name: str
    input: dict[str, Any]
    error: str | None = None
    status: str = ""  # "Reading src/app.py": the tool's wording, the same in every later event


@dataclass(frozen=True)
class ToolRunning:
    id: str
    name: str
    status: str


@dataclass(frozen=True)
class ToolGrace:
    """A destructive call waits out its grace window: what it would destroy, and for how long."""

    id: str
    description: str
    targets: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class ToolAsking:
    """Ask mode is about to ask the person about this call: renderers show what it would change."""

    id: str
    name: str
    input: dict[str, Any]
    workspace: str
    status: str = ""
    changes: tuple[str, ...] = ()  # a command's observed change set (its lines, then diffs), when it already ran


@dataclass(frozen=True)
class ToolProgress:
    id: str
    line: str


@dataclass(frozen=True)
class ToolFinished:
    """A call has its result; ``status`` and ``done`` word it ("Reading a.py", "Read a.py"), and the
    result's ``facts`` say how it ended."""

    id: str
    name: str
    result: ToolResult
    seconds: float
    reused: bool = False
    status: str = ""
    done: str = ""


@dataclass(frozen=True)
class TurnCommitted:
    stop_reason: str | None
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnRolledBack:
    """A reply broke off: nothing of it reached history. ``retry_in`` is None when giving up."""

    reason: str
    attempt: int
    max_attempts: int
    retry_in: float | None
    elapsed: float = 0.0
    undone: tuple[str, ...] = ()  # files restored from the undo journal
    discarded: int = 0  # results of read-only calls thrown away (kept for reuse by the retry)
    commands: tuple[str, ...] = ()  # commands that ran and cannot be undone
    kept: tuple[str, ...] = ()  # files a command changed after a file tool wrote them: left as they are


@dataclass(frozen=True)
class CacheMissed:
    """A reply wrote to the prompt cache what it should have read; ``message`` says why."""

    message: str


@dataclass(frozen=True)
class ContextUsed:
    """How much of the context window a request used (``window`` None: not known for this model)."""

    tokens: int
    window: int | None

    @property
    def fraction(self) -> float | None:
        return self.tokens / self.window if self.window else None

    def describe(self) -> str:
        """``context 45,000 / 200,000 tokens (23%)``."""
        if not self.window:
            return f"context {self.tokens:,} tokens (window unknown: set --context-window)"
        return f"context {self.tokens:,} / {self.window:,} tokens ({self.tokens / self.window:.0%})"


@dataclass(frozen=True)
class ContextCleared:
    """Old, large tool results (and long tool inputs, such as a big write's content) were replaced by a
    note saying how to get them again (one batch)."""

    results: int
    before: int  # estimated prompt tokens
    after: int
    inputs: int = 0  # of which tool inputs (the rest are results)


@dataclass(frozen=True)
class CompactionStarted:
    """The conversation is being summarised; ``reason`` is auto, overflow or requested."""

    reason: str
    tokens: int


@dataclass(frozen=True)
class Compacted:
    """The history is now the summary plus the last ``kept`` messages verbatim."""

    reason: str
    before: int  # estimated prompt tokens
    after: int
    summarised: int  # messages replaced by the summary
    kept: int  # messages kept verbatim
    usage: dict[str, Any] = field(default_factory=dict)  # of the summary request


@dataclass(frozen=True)
class CompactionFailed:
    """The summary could not be made; the history is unchanged."""

    reason: str
    message: str


@dataclass(frozen=True)
class SandboxStatus:
    """How shell commands run in this session, told once at start; ``confined`` False is a warning."""

    confined: bool
    message: str
    network: bool = False


@dataclass(frozen=True)
class HookNotice:
    """A hook failed, could not start, blocked something, or has a message for the person (one line)."""

    event: str  # the hook event: PreToolUse, UserPromptSubmit, ...
    message: str
    call_id: str = ""  # the call it ran for, if any


@dataclass(frozen=True)
class TurnEnded:
    """The model is done with this user message (or the loop gave up); ``usage`` is what this message
    cost, ``session`` the session's total so far (see tools/conversation/ledger.py)."""

    stop_reason: str | None
    ok: bool
    message: str = ""
    usage: Usage = field(default_factory=Usage)
    session: Usage = field(default_factory=Usage)


Event = (
    RequestStarted | TextDelta | ThinkingDelta | BlockStopped | ToolCallStarted | ToolInputDelta
    | ToolCallReady | ToolRunning | ToolGrace | ToolProgress | ToolFinished | TurnCommitted | TurnRolledBack | TurnEnded
    | CacheMissed | ContextUsed | ContextCleared | CompactionStarted | Compacted | CompactionFailed | SandboxStatus
    | ToolAsking | RequestUsage | HookNotice | MessageSent | QuestionAsked | QuestionClosed
)


class Renderer(Protocol):
    """Everything a renderer can do; ``Quiet`` gives the defaults a renderer without a screen keeps."""

    def show(self, event: Event) -> None:
        """One event of the loop; called from worker threads too."""

    def say(self, text: str, style: str = "") -> None:
        """A line of the program's own (not the model's), above any live region."""

    def suspended(self) -> contextlib.AbstractContextManager[None]:
        """Hold output while the person answers a question on the terminal."""

    def close(self) -> None:
        """The session is over: finish what is shown."""


class Quiet:
    """The defaults of the Renderer protocol: lines of our own to stderr, nothing to suspend or close."""

    def show(self, event: Event) -> None:
        pass

    def say(self, text: str, style: str = "") -> None:
        from midstream.tools.ui.sanitise import shown

        print(shown(text), file=sys.stderr, flush=True)

    def suspended(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        pass
