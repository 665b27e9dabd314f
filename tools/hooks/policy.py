"""What an event's hooks decided together (``Verdict``), and ``Hooks``, the object the loop calls.

The meaning of each answer is Claude Code's:

- exit 0: go on; JSON on stdout is read; for UserPromptSubmit and SessionStart plain stdout is
  context for the model.
- exit 2: PreToolUse: the call is not run and stderr is its error result; PostToolUse and Stop:
  stderr goes to the model (after a Stop block, the model goes on); UserPromptSubmit: the prompt
  is not sent and the person sees stderr; SessionStart/End: stderr is shown.
- any other status, a timeout, a command that cannot start: shown to the person, and the call (or
  the prompt) goes on unless the hook is ``fail_closed``.

JSON on stdout (exit 0): ``hookSpecificOutput.permissionDecision`` allow / deny / ask with
``permissionDecisionReason``; ``hookSpecificOutput.additionalContext``; ``decision = "block"`` with
``reason`` (PostToolUse, UserPromptSubmit, Stop; the older PreToolUse form too, with ``approve``);
``continue = false`` with ``stopReason`` ends the turn; ``systemMessage`` is shown to the person.
Several hooks of one event run in parallel; deny wins over ask, ask over allow. A hook that cannot
start is a configuration error, shown as such, never an answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midstream.tools.hooks.config import HookCommand, hook_names, matches
from midstream.tools.hooks.runner import HookRun, run_hook

__all__ = ["Hooks", "Verdict"]

_STRENGTH = {"allow": 1, "ask": 2, "deny": 3}


@dataclass(frozen=True)
class Verdict:
    """What one event's hooks decided together; empty when no hook matched."""

    event: str
    runs: tuple[HookRun, ...] = ()
    block: str | None = None  # why the event's action is blocked (for the model, or the person at a prompt)
    permission: str | None = None  # PreToolUse: allow, ask or deny
    reason: str = ""  # the hook's permissionDecisionReason
    context: tuple[str, ...] = ()  # additionalContext (and plain stdout where the event takes it)
    notices: tuple[str, ...] = ()  # lines for the person: failures, systemMessage
    stop: str | None = None  # continue = false: the turn ends; stopReason for the person
    stopped: bool = False  # the person interrupted a running hook

    @property
    def seconds(self) -> float:
        """Wall time of the event's hooks (they run side by side)."""
        return max((run.seconds for run in self.runs), default=0.0)


@dataclass
class _Tally:
    blocks: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    permission: str | None = None
    reason: str = ""
    stop: str | None = None


class Hooks:
    """The hooks of one session, run at the loop's points; with none configured every call is free."""

    def __init__(self, commands: list[HookCommand], workspace: Path, *, isolation: str = "auto",
                 mode: str = "auto", session_id: str = "", transcript_path: str = "",
                 tracer: Any = None) -> None:
        self.commands = commands
        self.workspace = workspace
        self.isolation = isolation
        self.mode = mode
        self.session_id = session_id
        self.transcript_path = transcript_path
        self.tracer = tracer
        self._running: set[threading.Event] = set()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.commands)

    def for_event(self, event: str, names: tuple[str, ...] = ()) -> list[HookCommand]:
        """The commands that fire for ``event`` (and, for tool events, a tool answering to ``names``)."""
        found, seen = [], set()
        for hook in self.commands:
            if hook.event != event or (names and not matches(hook.matcher, names)) or hook.command in seen:
                continue
            seen.add(hook.command)  # Claude Code runs an identical command once
            found.append(hook)
        return found

    def stop_all(self) -> None:
        """Esc or Ctrl-C: stop every hook that is running now."""
        with self._lock:
            for cancelled in self._running:
                cancelled.set()

    # -- the events -------------------------------------------------------------------------------

    def pre_tool_use(self, tool: str, tool_input: dict[str, Any], call_id: str, **run: Any) -> Verdict:
        """Before a call runs: may block it (exit 2, deny), ask, or allow it without asking."""
        payload = {"tool_name": _their_name(tool), "midstream_tool_name": tool,
                   "tool_input": self._claude_input(tool, tool_input), "tool_use_id": call_id}
        return self._fire("PreToolUse", payload, hook_names(tool), **run)

    def post_tool_use(self, tool: str, tool_input: dict[str, Any], response: dict[str, Any], call_id: str,
                      **run: Any) -> Verdict:
        """After a call ran: what a hook says goes to the model with the result."""
        payload = {"tool_name": _their_name(tool), "midstream_tool_name": tool,
                   "tool_input": self._claude_input(tool, tool_input), "tool_response": response,
                   "tool_use_id": call_id}
        return self._fire("PostToolUse", payload, hook_names(tool), **run)

    def user_prompt_submit(self, prompt: str, **run: Any) -> Verdict:
        """Before the person's message is sent: may refuse it (it is then not sent) or add context."""
        return self._fire("UserPromptSubmit", {"prompt": prompt}, **run)

    def stop(self, active: bool, **run: Any) -> Verdict:
        """The model is done: a hook may send it on (``block``), told why."""
        return self._fire("Stop", {"stop_hook_active": active}, **run)

    def session_start(self, source: str, **run: Any) -> Verdict:
        """startup, resume or clear: plain stdout is context for the model."""
        return self._fire("SessionStart", {"source": source}, (source,), **run)

    def session_end(self, reason: str, **run: Any) -> Verdict:
        """The session ends (exit, clear, other); hooks can only report."""
        return self._fire("SessionEnd", {"reason": reason}, **run)

    # -- running ------------------------------------------------------------------------------------

    def _claude_input(self, tool: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        """midstream's input plus Claude Code's ``file_path`` (absolute), so their hooks find the file."""
        shown = dict(tool_input)
        path = tool_input.get("path")
        if tool in ("read_file", "write_file", "edit_file") and isinstance(path, str):
            shown.setdefault("file_path", str(self.workspace.resolve() / path))
        return shown

    def _fire(self, event: str, fields: dict[str, Any], names: tuple[str, ...] = (), *,
              cancelled: threading.Event | None = None, progress: Callable[[str], None] | None = None,
              parent: Any = None, writable: bool = True) -> Verdict:
        hooks = self.for_event(event, names)
        if not hooks:
            return Verdict(event)
        payload = {"session_id": self.session_id, "transcript_path": self.transcript_path,
                   "cwd": str(self.workspace), "hook_event_name": event, "permission_mode": self.mode, **fields}
        if progress:
            progress(hooks[0].status or (hooks[0].label() + ("" if len(hooks) == 1 else f" and {len(hooks) - 1} more")))
        stop = cancelled or threading.Event()
        mine = threading.Event()  # stop_all sets it; it passes on to every hook of this event
        with self._lock:
            self._running.add(mine)
        try:
            runs = self._run_all(hooks, payload, stop, mine, parent, writable)
        finally:
            with self._lock:
                self._running.discard(mine)
        return _decide(event, runs, stopped=stop.is_set() or mine.is_set())

    def _run_all(self, hooks: list[HookCommand], payload: dict[str, Any], stop: threading.Event,
                 mine: threading.Event, parent: Any, writable: bool) -> list[HookRun]:
        either = _Either(stop, mine)
        results: list[HookRun | None] = [None] * len(hooks)

        def one(number: int) -> None:
            results[number] = self._traced(hooks[number], payload, either, parent, writable)

        threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(1, len(hooks))]
        for thread in threads:
            thread.start()
        one(0)
        for thread in threads:
            thread.join()
        return [run for run in results if run is not None]

    def _traced(self, hook: HookCommand, payload: dict[str, Any], cancelled: Any, parent: Any,
                writable: bool) -> HookRun:
        span = self.tracer.start(f"hook {hook.event}", parent=parent, attributes={
            "midstream.hook.event": hook.event, "midstream.hook.command": hook.command,
            "midstream.hook.source": "project" if hook.project else "user"}) if self.tracer else None
        run = run_hook(hook, payload, self.workspace, isolation=self.isolation, writable=writable,
                       cancelled=cancelled)
        if span is not None:
            span.set("midstream.hook.ended", run.ended)
            if run.exit_code is not None:
                span.set("midstream.hook.exit_code", run.exit_code)
            span.end(error=run.failure() if run.failed else None)
        return run


class _Either:
    """Set when either event is: the call's own stop, or Esc / Ctrl-C for every running hook."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self._events = (first, second)

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)


def _their_name(tool: str) -> str:
    """The name Claude Code's hooks check ``tool_name`` against (``Bash``), or midstream's own."""
    return hook_names(tool)[1] if len(hook_names(tool)) > 1 else tool


def _answer(run: HookRun) -> dict[str, Any] | None:
    """A hook's JSON answer on stdout (exit 0 only), or None for plain text."""
    text = run.stdout.strip()
    if not run.succeeded or not text.startswith("{"):
        return None
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _decide(event: str, runs: list[HookRun], *, stopped: bool) -> Verdict:
    tally = _Tally()
    for run in runs:
        _read(event, run, tally)
    if stopped:
        tally.blocks.insert(0, f"interrupted by the person while its {event} hook ran")
    block = "\n".join(tally.blocks) if tally.blocks else None
    return Verdict(event, tuple(runs), block, tally.permission, tally.reason, tuple(tally.context),
                   tuple(tally.notices), tally.stop, stopped)


def _read(event: str, run: HookRun, tally: _Tally) -> None:
    """One run's answer, added to the event's tally."""
    hook = run.hook
    if run.ended == "stopped":
        return
    if run.failed:
        tally.notices.append(run.failure())
        if hook.fail_closed and event in ("PreToolUse", "UserPromptSubmit"):
            tally.blocks.append(f"{run.failure()}; it is marked fail_closed, so this was not allowed")
        return
    if run.blocked:
        said = run.stderr.strip() or f"blocked by {hook.label()} (it gave no reason)"
        if event in ("SessionStart", "SessionEnd"):
            tally.notices.append(f"{hook.label()}: {said}")
        else:
            tally.blocks.append(said)
        return
    answer = _answer(run)
    if answer is None:
        if event in ("UserPromptSubmit", "SessionStart") and run.stdout.strip():
            tally.context.append(run.stdout.strip())
        return
    _read_json(event, hook, answer, tally)


def _read_json(event: str, hook: HookCommand, answer: dict[str, Any], tally: _Tally) -> None:
    specific = answer.get("hookSpecificOutput")
    specific = specific if isinstance(specific, dict) else {}
    if isinstance(message := answer.get("systemMessage"), str) and message.strip():
        tally.notices.append(f"{hook.label()}: {message.strip()}")
    if answer.get("continue") is False:
        reason = answer.get("stopReason")
        tally.stop = reason if isinstance(reason, str) and reason else f"{hook.label()} ended the turn"
        tally.blocks.append(tally.stop)
    if isinstance(context := specific.get("additionalContext"), str) and context.strip():
        tally.context.append(context.strip())
    decision = specific.get("permissionDecision") if event == "PreToolUse" else None
    reason = specific.get("permissionDecisionReason") or answer.get("reason") or ""
    if decision is None and event == "PreToolUse":  # the older form: decision approve / block
        decision = {"approve": "allow", "block": "deny"}.get(answer.get("decision"))  # type: ignore[arg-type]
    elif answer.get("decision") == "block" and event != "PreToolUse":
        tally.blocks.append(str(reason or f"blocked by {hook.label()}"))
        return
    if decision is None:
        return
    if decision not in _STRENGTH:
        tally.notices.append(f"{hook.label()} answered permissionDecision {decision!r}, which is not allow, "
                             "deny or ask; ignored")
        return
    if _STRENGTH[decision] > _STRENGTH.get(tally.permission or "", 0):
        tally.permission, tally.reason = decision, str(reason)
    if decision == "deny":
        tally.blocks.append(str(reason or f"denied by {hook.label()}"))
