"""Tools as plain typed functions, and the registry the loop asks for schemas and callables.

A tool is a function ``f(ctx, **params) -> str | Output`` whose first docstring line is what the
model reads. Its input schema is derived from the signature, so the two cannot drift apart. Beside
it sit what the scheduler and the status line need: how a call is worded (``Wording``: "Reading
src/app.py" while it runs, "Read src/app.py" once done) and what a call touches (``judge``: the
paths it reads and writes, and whether it is destructive and why), judged once per call.

Results carry facts beside their prose (``Facts``: how the call ended, exit status, counts, the
diff), so no renderer ever parses what was written for the model. Failures are data
(``ToolResult(is_error=True)``): a tool raises ``ToolError`` for a failure the model should act on;
any other exception is reported too, never raised into the loop.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from midstream.tools.schema import schema_from_signature, validate

__all__ = [
    "Access",
    "Decision",
    "Ending",
    "Facts",
    "Judgement",
    "NOT_STARTED",
    "Output",
    "PlannedCall",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolSource",
    "Wording",
    "counted",
    "tool",
]

Ending = Literal["ran", "failed", "refused", "stopped", "not_run", "interrupted", "timed_out", "discarded"]

NOT_STARTED = "Not run: the person interrupted the turn before this call started. Do not retry it unasked."


@dataclass(frozen=True)
class Facts:
    """What a call's result says as data, beside the text written for the model.

    ``ended``: ran (and succeeded), failed (ran, or tried to, and failed), refused (by a policy or the
    person before it ran), stopped (in its countdown, by the person), not_run (the turn ended before it
    started), interrupted (stopped while running), timed_out, discarded (a command ran in isolation and
    its change set was not applied: ``detail`` says why).
    """

    ended: Ending = "ran"
    exit_status: int | None = None  # a command's
    lines: int | None = None  # lines read, or written
    count: int | None = None  # entries listed, files found, matching lines
    diff: str = ""  # the whole unified diff of what an edit or an overwrite changed
    detail: str = ""  # the one thing worth showing beside the outcome ("1 failed, 11 passed")
    applied: str = ""  # what a command's change set did to the workspace ("2 created, 1 modified")


@dataclass(frozen=True)
class ToolResult:
    """What goes back to the model as one tool_result block, and the facts renderers show."""

    content: str
    is_error: bool = False
    facts: Facts = Facts()


@dataclass(frozen=True)
class Output:
    """A tool's text for the model together with the facts of its outcome."""

    text: str
    facts: Facts = Facts()


class ToolError(Exception):
    """A failure the model can act on; its message becomes an error tool_result."""

    def __init__(self, message: str, facts: Facts | None = None) -> None:
        super().__init__(message)
        self.facts = facts or Facts(ended="failed")


@dataclass(frozen=True)
class Access:
    """Workspace-relative paths a call reads and writes; "." stands for the whole workspace.

    Two calls conflict when one writes what the other reads or writes. A path covers everything
    below it, so a write to "src" conflicts with a read of "src/app.py".
    """

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()

    WHOLE = "."

    @classmethod
    def reading(cls, *paths: str) -> Access:
        return cls(reads=frozenset(paths))

    @classmethod
    def writing(cls, *paths: str) -> Access:
        return cls(writes=frozenset(paths))

    @classmethod
    def whole_workspace(cls, *, read_only: bool) -> Access:
        if read_only:
            return cls(reads=frozenset({cls.WHOLE}))
        return cls(writes=frozenset({cls.WHOLE}))

    def conflicts_with(self, other: Access) -> bool:
        return (
            _overlap(self.writes, other.writes | other.reads)
            or _overlap(self.reads, other.writes)
        )


def counted(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 line``, ``12 lines``, ``3 entries``: a count and its noun, as a result's ``detail``."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def _covers(a: str, b: str) -> bool:
    return a == Access.WHOLE or b == Access.WHOLE or a == b or b.startswith(a + "/") or a.startswith(b + "/")


def _overlap(xs: Iterable[str], ys: Iterable[str]) -> bool:
    ys = list(ys)
    return any(_covers(x, y) for x in xs for y in ys)


def workspace_key(workspace: Path, path: str) -> str:
    """Normalise a path the model gave into the key the scheduler compares.

    This is only for ordering; confinement is enforced when the tool runs.
    """
    joined = os.path.normpath(os.path.join(workspace, os.path.expanduser(path)))
    rel = os.path.relpath(joined, workspace)
    return Access.WHOLE if rel == "." else rel.replace(os.sep, "/")


@dataclass(frozen=True)
class Judgement:
    """What one call touches, judged once at dispatch: the scheduler orders by ``access``, the gate
    counts down for ``destructive`` (``reasons`` say why; ``findings`` are the classifier's, from
    which the gate lists what would go)."""

    access: Access
    destructive: bool = False
    reasons: tuple[str, ...] = ()
    findings: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What the gate decided for one call; the tool and the loop read it, nobody decides again.

    ``refusal`` set: the call does not run and that text is its error result (``ended`` says how).
    Otherwise it runs under ``isolation`` (bwrap or none), with the workspace writable or not, the
    network on or off, and ``literal``: no glob or brace expansion (the allowlist's fallback)."""

    refusal: str | None = None
    ended: Ending = "refused"
    isolation: str = "auto"
    writable: bool = True
    network: bool = False
    literal: bool = False
    # A command run as a transaction: judges its change set once it ran (sandbox/review.py), None: it runs
    # directly on the workspace.
    review: Callable[[Any], Any] | None = None


@dataclass
class ToolContext:
    """What a running tool may use besides its input; the loop stops it through ``stop``."""

    workspace: Path
    report_progress: Callable[[str], None] = lambda line: None
    before_write: Callable[[Path], None] = lambda path: None  # the undo journal's hook
    cancelled: threading.Event = field(default_factory=threading.Event)
    decision: Decision = Decision()
    discard: threading.Event = field(default_factory=threading.Event)  # the reply broke off: pending changes go
    undo: Any = None  # the conversation's undo (sandbox/undo.py TurnUndo): where applied changes are recorded
    live: threading.Event = field(default_factory=threading.Event)  # it started what stop(kill=True) ends
    _killers: list[Callable[[], None]] = field(default_factory=list)
    _killed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_kill(self, kill: Callable[[], None]) -> None:
        """Register how to end what this call started at once (a process group), for ``stop(kill=True)``."""
        with self._lock:
            self._killers.append(kill)
            killed = self._killed
        self.live.set()
        if killed:  # the kill was asked for while the process was being started: it must not miss it
            kill()

    def stop(self, *, kill: bool = False) -> None:
        """Ask the call to stop (it sees ``cancelled``); with ``kill``, end what it started now."""
        self.cancelled.set()
        if kill:
            with self._lock:
                self._killed = True
                killers = list(self._killers)
            for end in killers:
                end()


@dataclass(frozen=True)
class Wording:
    """How a call is worded for the person: "Reading src/app.py" while it runs, "Read src/app.py"
    once done. ``target`` is the input field it names (shown while the input still streams);
    ``shown`` turns that field's value into the words (a command is quoted and shortened)."""

    verb: str
    past: str
    target: str = "path"
    default: str = "…"
    shown: Callable[[str], str] = str
    words: Callable[[dict[str, Any]], str] | None = None  # when more than one field makes the words

    def of(self, args: dict[str, Any], verb: str | None = None) -> str:
        value = args.get(self.target)
        if self.words is not None:
            words = self.words(args)
        else:
            words = self.shown(str(value)) if value not in (None, "") else self.default
        return f"{verb or self.verb} {words}".strip()

    def status(self, args: dict[str, Any]) -> str:
        return self.of(args)

    def done(self, args: dict[str, Any]) -> str:
        return self.of(args, self.past)


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with what the scheduler and the status line need."""

    name: str
    function: Callable[..., str | Output]
    description: str
    input_schema: dict[str, Any]
    judge: Callable[[Path, dict[str, Any]], Judgement]
    wording: Wording
    journaled: bool = False  # its writes go through ctx.before_write, so a rollback can undo them

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    def status(self, args: dict[str, Any]) -> str:
        """The status line of a call: "Reading src/app.py"."""
        return self.wording.status(args)

    def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        """Call the function; every failure comes back as an error result."""
        try:
            out = self.function(ctx, **args)
        except ToolError as exc:
            return ToolResult(str(exc), is_error=True, facts=exc.facts)
        except PermissionError as exc:
            return ToolResult(str(exc), is_error=True, facts=Facts(ended="refused"))
        except Exception as exc:  # a tool bug must not take the turn down with it
            return ToolResult(f"{self.name} failed: {type(exc).__name__}: {exc}", is_error=True,
                              facts=Facts(ended="failed"))
        if isinstance(out, Output):
            return ToolResult(out.text, facts=out.facts)
        return ToolResult(out)

    def plan(self, workspace: Path, call_id: str, args: dict[str, Any]) -> PlannedCall:
        """Judge one call, once: what it touches, how it is worded. An odd input that cannot be judged
        is ordered after everything instead (it is refused or fails when it runs)."""
        try:
            judgement = self.judge(workspace, args)
        except Exception:
            judgement = Judgement(Access.whole_workspace(read_only=False))
        return PlannedCall(call_id, self, args, judgement, self.wording.status(args), self.wording.done(args))


@dataclass(frozen=True)
class PlannedCall:
    """One call as judged at dispatch. The gate, the scheduler, the tool, rollback and the renderers
    read this record; nothing downstream judges or words the call again."""

    id: str
    tool: Tool
    input: dict[str, Any]
    judgement: Judgement
    status: str  # "Reading src/app.py"
    done: str  # "Read src/app.py"


def tool(
    *,
    wording: Wording,
    access: Callable[[Path, dict[str, Any]], Access] | None = None,
    judge: Callable[[Path, dict[str, Any]], Judgement] | None = None,
    params: dict[str, str] | None = None,
    name: str | None = None,
    journaled: bool = False,
) -> Callable[[Callable[..., str | Output]], Tool]:
    """Turn a typed function into a Tool; the docstring is the description the model reads.

    A tool names what a call touches either as ``access`` (paths only) or as ``judge`` (paths and
    whether it is destructive, judged together: a command is read once)."""
    if judge is None:
        if access is None:
            raise TypeError("give a tool access= or judge=")
        touches = access

        def judge(workspace: Path, args: dict[str, Any]) -> Judgement:
            return Judgement(touches(workspace, args))
    elif access is not None:
        raise TypeError("give a tool access= or judge=, not both")
    judged = judge

    def wrap(function: Callable[..., str | Output]) -> Tool:
        return Tool(
            name=name or function.__name__,
            function=function,
            description=inspect.cleandoc(function.__doc__ or ""),
            input_schema=schema_from_signature(function, params or {}),
            judge=judged,
            wording=wording,
            journaled=journaled,
        )

    return wrap


class ToolSource(Protocol):
    """Tools that come and go with something outside midstream (MCP servers): asked between turns."""

    def tools_for_turn(self, stop: Callable[[], bool]) -> list[Tool]: ...


class ToolRegistry:
    """The tools the model may call, in a stable order (stable bytes keep the prompt cache warm).

    Built-ins come first, sorted; a source's tools follow them, sorted, and change only when
    ``between_turns`` is called (the loop does so before each user message), so the tools a request
    carries never change within a turn and the prompt cache breaks at most once when a source grows.
    """

    def __init__(self, tools: Iterable[Tool], sources: Iterable[ToolSource] = ()) -> None:
        self._builtin = {t.name: t for t in sorted(tools, key=lambda t: t.name)}
        self._sources = list(sources)
        self._tools = dict(self._builtin)

    def add_source(self, source: ToolSource) -> None:
        self._sources.append(source)

    @property
    def sources(self) -> tuple[ToolSource, ...]:
        return tuple(self._sources)

    def between_turns(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Let the sources' tools join (or leave); ``stop`` ends a wait for them early (Ctrl-C)."""
        if not self._sources:
            return
        joined = sorted((t for s in self._sources for t in s.tools_for_turn(stop) if t.name not in self._builtin),
                        key=lambda t: t.name)
        tools = {**self._builtin, **{t.name: t for t in joined}}
        if list(tools.items()) != list(self._tools.items()):
            self._tools = tools  # one assignment: tool threads reading get() see the old or the new table

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self._tools.values()]

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def check(self, name: str, args: Any) -> str | None:
        """Why this call cannot run (unknown tool, bad input), or None when it can."""
        found = self._tools.get(name)
        if found is None:
            return f"Unknown tool '{name}'. The available tools are: {', '.join(self._tools)}."
        problems = validate(found.input_schema, args)
        if problems:
            return f"Invalid input for {name}: " + "; ".join(problems) + ". Fix the input and call it again."
        return None
