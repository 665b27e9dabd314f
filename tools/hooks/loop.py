"""The loop's side of hooks: what each point of a turn does with its hooks' ``Verdict``.

agent.py and tools/calls.py call one method per point; everything the person must see (a failed or
unlaunchable hook, a block, a ``systemMessage``) becomes a ``HookNotice`` event, what the model
must read becomes text in the history, and each run is a span under the turn or call it ran for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from midstream.tools.events import HookNotice, ToolProgress, ToolRunning
from midstream.tools.hooks.config import hook_names
from midstream.tools.hooks.policy import Hooks, Verdict
from midstream.tools.registry import ToolResult

__all__ = ["MAX_STOP_BLOCKS", "LoopHooks", "PreToolOutcome"]

MAX_STOP_BLOCKS = 8  # Claude Code's limit: a Stop hook that always blocks cannot keep the model going for ever


class _Flag:
    """``is_set`` over a callable, so a hook stops when the agent's ``interrupting`` turns true."""

    def __init__(self, check: Callable[[], bool]) -> None:
        self._check = check

    def is_set(self) -> bool:
        return self._check()


class PreToolOutcome:
    """What PreToolUse hooks decided for one call: run it (asking first, or not), or its error result."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.refusal: ToolResult | None = None
        if verdict.block is not None:
            self.refusal = ToolResult(verdict.block, is_error=True)
        self.ask = verdict.permission == "ask"  # ask the person, whatever the mode
        self.allow = verdict.permission == "allow"  # the hook approved: no question in ask mode
        self.reason = verdict.reason
        self.context = verdict.context


class LoopHooks:
    """The session's hooks as the loop uses them; with none configured every method costs nothing."""

    def __init__(self, hooks: Hooks, show: Callable[[Any], None], trace: Any = None,
                 before_run: Callable[[], None] = lambda: None) -> None:
        self.hooks = hooks
        self.show = show
        self.trace = trace
        self.before_run = before_run  # a snapshot /undo can return to: what a hook writes is part of the turn
        if trace is not None and trace.enabled:
            hooks.tracer = trace.tracer  # each run a span, under the turn or the call it ran for
        self._stop_blocks = 0
        self._context: list[str] = []  # SessionStart's context, for the next message
        self._ended: str | None = None  # a hook answered continue = false: the turn ends after these calls

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def _said(self, verdict: Verdict, call_id: str = "") -> Verdict:
        for notice in verdict.notices:
            self.show(HookNotice(verdict.event, notice, call_id))
        if verdict.stop is not None:
            self._ended = self._ended or verdict.stop
        return verdict

    def take_stop(self) -> str | None:
        """Why a hook ended the turn (``continue = false``, its ``stopReason``), once; None if none did."""
        ended, self._ended = self._ended, None
        return ended

    def _turn_span(self) -> Any:
        return self.trace.turn_span if self.trace is not None else None

    # -- the session ----------------------------------------------------------------------------

    def session_start(self, source: str) -> None:
        """startup, resume or clear: what the hooks print is context for the next message."""
        verdict = self._said(self.hooks.session_start(source))
        self._context += [f"[SessionStart hook]\n{text}" for text in verdict.context]

    def session_end(self, reason: str) -> None:
        self._said(self.hooks.session_end(reason))

    # -- a turn ---------------------------------------------------------------------------------

    def prompt(self, text: str, interrupting: Callable[[], bool]) -> tuple[str | None, list[dict[str, Any]]]:
        """UserPromptSubmit: (why the message is not sent, or None; text blocks to send before it)."""
        self._stop_blocks, self._ended = 0, None
        verdict = self._said(self.hooks.user_prompt_submit(text, cancelled=_Flag(interrupting),
                                                           parent=self._turn_span()))
        context, self._context = self._context, []
        if verdict.block is not None:
            self._context = context  # not sent: it goes with the next message instead
            return verdict.block, []
        context += [f"[UserPromptSubmit hook]\n{text}" for text in verdict.context]
        return None, [{"type": "text", "text": text} for text in context]

    def stop(self, interrupting: Callable[[], bool]) -> str | None:
        """Stop: the text that sends the model on (a hook blocked the stop), or None to end the turn."""
        if not self.hooks.for_event("Stop"):
            return None
        verdict = self._said(self.hooks.stop(self._stop_blocks > 0, cancelled=_Flag(interrupting),
                                             parent=self._turn_span()))
        if verdict.block is None or verdict.stopped or verdict.stop is not None:
            return None
        self._stop_blocks += 1
        if self._stop_blocks > MAX_STOP_BLOCKS:
            self.show(HookNotice("Stop", f"Stop hooks blocked the end of this turn {MAX_STOP_BLOCKS} times in a row; "
                                 "the turn ends anyway"))
            return None
        return f"[Stop hook] {verdict.block}"

    # -- a call ---------------------------------------------------------------------------------

    def _call_run(self, name: str, call_id: str, cancelled: Any, writable: bool) -> dict[str, Any]:
        self.before_run()
        span = self.trace.span_of_call(call_id) if self.trace is not None else None
        # The hook is what this call is doing now: its status line says so, and counts the hook's time.
        return {"cancelled": cancelled, "parent": span, "writable": writable,
                "progress": lambda line: self.show(ToolRunning(call_id, name, line))}

    def pre_tool(self, name: str, tool_input: dict[str, Any], call_id: str, *, cancelled: Any,
                 writable: bool = True) -> PreToolOutcome:
        """PreToolUse, at dispatch: run in the call's own worker, side by side with other calls' hooks."""
        if not self.hooks.for_event("PreToolUse", hook_names(name)):
            return PreToolOutcome(Verdict("PreToolUse"))
        if cancelled.is_set():  # stopped before its hooks began: nothing runs, the hooks neither
            return PreToolOutcome(Verdict("PreToolUse", block="interrupted by the person before this call ran",
                                          stopped=True))
        run = self._call_run(name, call_id, cancelled, writable)
        verdict = self._said(self.hooks.pre_tool_use(name, tool_input, call_id, **run), call_id)
        if verdict.runs:
            self.show(ToolProgress(call_id, f"PreToolUse hooks {verdict.seconds:.1f} s"))
        return PreToolOutcome(verdict)

    def post_tool(self, name: str, tool_input: dict[str, Any], result: ToolResult, call_id: str, *,
                  cancelled: Any, writable: bool = True, pre: PreToolOutcome | None = None) -> ToolResult:
        """PostToolUse: the result, with what the hooks (these, and ``pre``'s context) said for the model."""
        notes = [f"[PreToolUse hook context: {text}]" for text in (pre.context if pre is not None else ())]
        if self.hooks.for_event("PostToolUse", hook_names(name)) and not cancelled.is_set():
            # (an interrupted call's hooks do not start after it)
            response = _response(name, tool_input, result, self.hooks.workspace)
            verdict = self.hooks.post_tool_use(name, tool_input, response, call_id,
                                               **self._call_run(name, call_id, cancelled, writable))
            self._said(verdict, call_id)
            notes += [f"[PostToolUse hook: {text}]" for text in ([verdict.block] if verdict.block else [])]
            notes += [f"[PostToolUse hook context: {text}]" for text in verdict.context]
        if not notes:
            return result
        return replace(result, content="\n".join([result.content, *notes]))

    def stop_all(self) -> None:
        """Esc or Ctrl-C: every running hook stops."""
        self.hooks.stop_all()


def _response(name: str, tool_input: dict[str, Any], result: ToolResult, workspace: Any) -> dict[str, Any]:
    """``tool_response``: the result and its facts, with the keys Claude Code's hooks read for the same tool."""
    facts = result.facts
    response: dict[str, Any] = {"content": result.content, "is_error": result.is_error, "success": not result.is_error,
                                "ended": facts.ended}
    if facts.exit_status is not None:
        response["exit_status"] = facts.exit_status
    if name == "bash":  # Claude Code's Bash: stdout (ours has stderr merged in), stderr, interrupted
        response.update(stdout=result.content, stderr="", interrupted=facts.ended == "interrupted")
    if name in ("write_file", "edit_file", "read_file") and isinstance(tool_input.get("path"), str):
        response["filePath"] = str(workspace.resolve() / tool_input["path"])
    if facts.diff:
        response["diff"] = facts.diff
    return response
