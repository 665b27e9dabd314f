"""midstream: a coding agent whose tools start the moment their call is complete in the stream.

The story of one turn, top to bottom:

1. The person's message is appended to history (Messages API dicts, nothing of ours in them).
2. One streaming request goes out. Each SSE event is fed to the TurnAssembler; what it reports
   goes to the renderer, and each finished ``tool_use`` block goes straight to the Scheduler,
   which starts it while the model keeps streaming.
3. At ``message_stop`` the assistant message is committed to history. A reply that ends any
   other way is rolled back (history is untouched) and the request is retried with backoff.
4. If the model asked for tools, the loop waits for them, appends one user message with a
   ``tool_result`` per ``tool_use`` in block order, and goes back to 2.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.permissions import MODES, Gate
from tools.assembler import TurnAssembler
from tools.events import (
    Renderer,
    RequestStarted,
    ToolCallReady,
    ToolFinished,
    ToolGrace,
    ToolProgress,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)
from tools.model import ModelClient, ModelError, RetryableModelError
from tools.registry import Access, ToolContext, ToolRegistry, ToolResult
from tools.scheduler import ScheduledCall, Scheduler

__all__ = ["Agent", "AgentConfig", "main"]

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"


@dataclass
class AgentConfig:
    """Everything that shapes a session; defaults are what a person gets with no flags."""

    workspace: Path = field(default_factory=Path.cwd)
    """The directory the tools act in."""
    model: str = DEFAULT_MODEL
    """Model name sent with every request."""
    base_url: str = DEFAULT_BASE_URL
    """Any Anthropic-compatible Messages API."""
    api_key: str | None = None
    """Sent as x-api-key; may be absent for a local server."""
    max_tokens: int = 16000
    """Output budget of one model request."""
    max_requests: int = 50
    """Model requests allowed for one user message before the loop stops."""
    max_attempts: int = 5
    """Tries of one request (the first plus retries) before giving up."""
    connect_timeout: float = 10.0
    """Seconds to open a connection to the model service."""
    idle_timeout: float = 90.0
    """Seconds without any stream event (pings count) before the reply is treated as dropped."""
    backoff_base: float = 1.0
    """First retry delay in seconds; it doubles each attempt, with jitter."""
    backoff_max: float = 30.0
    """Largest retry delay in seconds, unless the server's retry-after asks for more."""
    workers: int = 8
    """Tool calls that may run at once."""
    mode: str = "auto"
    """Permission mode: read-only, ask or auto (see sandbox/permissions.py)."""
    grace_seconds: float = 3.0
    """How long a destructive call shows its targets before it runs in auto mode; 0 turns it off."""
    isolation: str = "auto"
    """Shell isolation: bwrap, none, or auto (bwrap when it works here)."""
    system_prompt: str = ""
    """The system prompt; empty means built from prompts/ for this workspace."""


@dataclass
class _Reply:
    """One complete reply: the assistant message and the futures of the calls it dispatched."""

    message: dict[str, Any]
    stop_reason: str | None
    usage: dict[str, Any]
    calls: list[tuple[str, Future[ToolResult]]]


class Agent:
    """Holds the conversation and runs the turn loop for each user message."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        tools: ToolRegistry,
        renderer: Renderer,
        history: list[dict[str, Any]] | None = None,
        confirm: Callable[[str], str] | None = None,
    ) -> None:
        self.config = config
        self.tools = tools
        self.renderer = renderer
        self.history: list[dict[str, Any]] = history if history is not None else []
        self.model = ModelClient(
            base_url=config.base_url,
            api_key=config.api_key,
            connect_timeout=config.connect_timeout,
            idle_timeout=config.idle_timeout,
        )
        self.scheduler = Scheduler(config.workers)
        self.gate = Gate(
            mode=config.mode,
            grace_seconds=config.grace_seconds,
            confirm=confirm,
            announce=lambda w: renderer.show(ToolGrace(w.call_id, w.description, w.targets, w.seconds)),
        )
        if not config.system_prompt:
            from prompts import build_system_prompt

            config.system_prompt = build_system_prompt(config.workspace)

    def close(self) -> None:
        self.scheduler.shutdown()
        self.model.close()

    # -- the turn ---------------------------------------------------------------------------------

    def send(self, text: str) -> TurnEnded:
        """Run one user message to the end: as many model requests as the tools need."""
        self._append_user_content([{"type": "text", "text": text}])
        for request_number in range(1, self.config.max_requests + 1):
            try:
                reply = self._request_with_retries(request_number)
            except ModelError as error:
                return self._end(None, ok=False, message=str(error))
            self.history.append(reply.message)
            self.renderer.show(TurnCommitted(reply.stop_reason, reply.usage))
            if reply.calls:
                self._append_user_content(self._collect_results(reply.calls))
            match reply.stop_reason:
                case "tool_use" | "pause_turn":
                    continue
                case "max_tokens" if reply.calls:
                    continue
                case "end_turn" | "stop_sequence":
                    return self._end(reply.stop_reason, ok=True)
                case "max_tokens":
                    return self._end("max_tokens", ok=False, message="the reply was cut off at max_tokens")
                case "refusal":
                    return self._end("refusal", ok=False, message="the model refused this request")
                case other:
                    return self._end(other, ok=False, message=f"unexpected stop reason {other!r}")
        return self._end(None, ok=False, message=f"stopped after {self.config.max_requests} model requests")

    def _end(self, stop_reason: str | None, *, ok: bool, message: str = "") -> TurnEnded:
        ended = TurnEnded(stop_reason, ok, message)
        self.renderer.show(ended)
        return ended

    def _append_user_content(self, blocks: list[dict[str, Any]]) -> None:
        # Tool results and the next thing the person types share one user message, so roles alternate.
        last = self.history[-1] if self.history else None
        if last is not None and last["role"] == "user":
            last["content"] = [*_as_blocks(last["content"]), *blocks]
        else:
            self.history.append({"role": "user", "content": blocks})

    # -- one request, retried until it completes ---------------------------------------------

    def _request_with_retries(self, request_number: int) -> _Reply:
        attempts = self.config.max_attempts
        for attempt in range(1, attempts + 1):
            self.renderer.show(RequestStarted(attempt, request_number))
            try:
                return self._stream_reply()
            except ModelError as error:
                # Nothing of this reply reached history, so the conversation is as it was.
                last = attempt == attempts or not error.retryable
                delay = None if last else self._backoff(attempt, error.retry_after)
                self.renderer.show(TurnRolledBack(str(error), attempt, attempts, delay))
                if last:
                    raise
                assert delay is not None
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter, so many agents do not retry in lockstep
        return max(delay, retry_after or 0.0)

    def _stream_reply(self) -> _Reply:
        assembler = TurnAssembler()
        calls: list[tuple[str, Future[ToolResult]]] = []
        try:
            with self.model.stream(self._request_body()) as events:
                for event in events:
                    for update in assembler.feed(event):
                        self.renderer.show(update)
                        if isinstance(update, ToolCallReady):
                            calls.append((update.id, self._dispatch(update)))  # mid-stream dispatch
                    if assembler.complete:
                        break
            if not assembler.complete:
                raise RetryableModelError("the stream ended before message_stop")
        except BaseException:
            # Calls already running are allowed to finish: a half-done command is worse than a done one.
            wait([future for _, future in calls])
            raise
        message = assembler.message()
        if assembler.stop_reason == "max_tokens":
            message, calls = _drop_cut_off_calls(message, calls, assembler.bad_tool_ids)
        return _Reply(message, assembler.stop_reason, assembler.usage, calls)

    def _request_body(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "system": self.config.system_prompt,
            "tools": self.tools.schemas(),
            "messages": self.history,
            "stream": True,
        }

    # -- tools ------------------------------------------------------------------------------------

    def _dispatch(self, call: ToolCallReady) -> Future[ToolResult]:
        """Hand a finished tool_use block to the scheduler; bad calls get an error result at once."""
        problem = call.error or self.tools.check(call.name, call.input)
        tool = self.tools.get(call.name)
        if problem or tool is None:
            return self._finished_now(call, ToolResult(problem or "unknown tool", is_error=True))
        workspace = self.config.workspace
        try:
            access = tool.access(workspace, call.input)
        except Exception:  # an odd path must not stop the call; order it after everything instead
            access = Access.whole_workspace(read_only=False)

        def run() -> ToolResult:
            self.renderer.show(ToolRunning(call.id, call.name, tool.status(call.input)))
            started = time.monotonic()
            ctx = ToolContext(
                workspace,
                report_progress=lambda line: self.renderer.show(ToolProgress(call.id, line)),
                extras={"isolation": self.config.isolation},
            )
            refusal = self.gate.check(tool, call.input, ctx, call.id)
            result = ToolResult(refusal, is_error=True) if refusal else tool.run(ctx, call.input)
            self.renderer.show(ToolFinished(call.id, call.name, result, time.monotonic() - started))
            return result

        return self.scheduler.submit(ScheduledCall(call.id, access, run))

    def _finished_now(self, call: ToolCallReady, result: ToolResult) -> Future[ToolResult]:
        future: Future[ToolResult] = Future()
        future.set_result(result)
        self.renderer.show(ToolFinished(call.id, call.name, result, 0.0))
        return future

    def _collect_results(self, calls: list[tuple[str, Future[ToolResult]]]) -> list[dict[str, Any]]:
        """One tool_result per tool_use, in block order, errors flagged."""
        blocks = []
        for tool_use_id, future in calls:
            result = future.result()
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": result.content}
            if result.is_error:
                block["is_error"] = True
            blocks.append(block)
        return blocks


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _drop_cut_off_calls(
    message: dict[str, Any], calls: list[tuple[str, Future[ToolResult]]], cut_off: set[str]
) -> tuple[dict[str, Any], list[tuple[str, Future[ToolResult]]]]:
    """A tool_use truncated by max_tokens never ran; it leaves history so no result is owed."""
    content = [b for b in message["content"] if not (b.get("type") == "tool_use" and b.get("id") in cut_off)]
    return {**message, "content": content}, [(i, f) for i, f in calls if i not in cut_off]


# -- command line ---------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="midstream", description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--print", dest="task", metavar="TASK", help="run one task, print the reply, exit")
    parser.add_argument("--model", default=os.environ.get("ANTHROPIC_MODEL") or DEFAULT_MODEL)
    parser.add_argument("--cwd", type=Path, default=Path.cwd(), help="the workspace (default: here)")
    parser.add_argument("--max-requests", type=int, default=AgentConfig.max_requests)
    parser.add_argument("--max-attempts", type=int, default=AgentConfig.max_attempts)
    parser.add_argument("--idle-timeout", type=float, default=AgentConfig.idle_timeout)
    parser.add_argument("--workers", type=int, default=AgentConfig.workers)
    parser.add_argument("--mode", choices=MODES, default=AgentConfig.mode, help="permission mode (default: auto)")
    parser.add_argument("--grace", type=float, default=AgentConfig.grace_seconds, metavar="SECONDS",
                        help="grace window before a destructive command runs in auto mode (0: off)")
    parser.add_argument("--isolation", choices=("auto", "bwrap", "none"), default=AgentConfig.isolation,
                        help="run shell commands under bubblewrap (auto: when it works here)")
    return parser.parse_args(argv)


def config_from_environment(args: argparse.Namespace) -> AgentConfig:
    """Settings from flags and ANTHROPIC_* variables; a missing key is an error only for the real API."""
    api_key = os.environ.get("ANTHROPIC_API_KEY") or None
    base_url = os.environ.get("ANTHROPIC_BASE_URL") or None
    if api_key is None and base_url is None:
        raise SystemExit(
            "midstream: set ANTHROPIC_API_KEY to use the Anthropic API, or ANTHROPIC_BASE_URL "
            "for another Anthropic-compatible server."
        )
    return AgentConfig(
        workspace=args.cwd.resolve(),
        model=args.model,
        base_url=base_url or DEFAULT_BASE_URL,
        api_key=api_key,
        max_requests=args.max_requests,
        max_attempts=args.max_attempts,
        idle_timeout=args.idle_timeout,
        workers=args.workers,
        mode=args.mode,
        grace_seconds=args.grace,
        isolation=args.isolation,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    config = config_from_environment(args)
    from tools import default_registry
    from tools.render import PlainRenderer

    if config.isolation == "bwrap":
        from sandbox.isolation import bwrap_works

        if not bwrap_works():
            raise SystemExit("midstream: --isolation bwrap, but bubblewrap is not installed or cannot run here.")
    interactive = args.task is None and sys.stdin.isatty()
    agent = Agent(config, tools=default_registry(), renderer=PlainRenderer(),
                  confirm=_confirm_on_terminal if interactive else None)
    try:
        if args.task is not None:
            return 0 if agent.send(args.task).ok else 1
        return _interactive(agent)
    finally:
        agent.close()


def _confirm_on_terminal(question: str) -> str:
    answer = input(f"{question} [y]es / [n]o / [a]lways this session: ").strip().lower()
    return {"y": "yes", "yes": "yes", "a": "always", "always": "always"}.get(answer, "no")


def _interactive(agent: Agent) -> int:
    while True:
        try:
            text = input("› ")
        except EOFError:
            return 0
        if not text.strip():
            return 0
        agent.send(text)


if __name__ == "__main__":
    sys.exit(main())
