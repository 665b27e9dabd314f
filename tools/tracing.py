"""OpenTelemetry traces of the loop, opt-in by the standard variables and off by default.

``OTEL_TRACES_EXPORTER=otlp`` turns them on (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``, ``OTEL_SERVICE_NAME`` as the SDK reads them); the SDK
comes with ``pip install 'midstream[otel]'`` and is imported (tools/tracing_otel.py) only then.
Unset, every span is the do-nothing ``NO_SPAN`` and nothing is imported or sent.

The spans are the GenAI semantic conventions' and mirror the loop (``LoopTrace``): one
``invoke_agent`` per person's message; one ``chat {model}`` per request attempt, retries and
rollbacks included (usage, cache reads and writes, stop reason, time to first chunk); one
``execute_tool {name}`` per call, a child of the chat span whose reply dispatched it, started the
moment it was dispatched, while that reply still streams; hooks and compactions as spans too.
Prompt and output text stay out unless ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from midstream.tools.events import (
    Compacted,
    CompactionFailed,
    CompactionStarted,
    ContextCleared,
    Event,
    RequestStarted,
    RequestUsage,
    TextDelta,
    ThinkingDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolInputDelta,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)

__all__ = ["NO_SPAN", "NOT_TRACING", "LoopTrace", "Span", "Tracer", "from_environment"]


class Span(Protocol):
    def set(self, key: str, value: Any) -> None: ...
    def end(self, error: str | None = None) -> None: ...
    def traceparent(self) -> str | None: ...


class Tracer(Protocol):
    enabled: bool
    capture_content: bool

    def start(self, name: str, *, parent: Span | None = None, attributes: Mapping[str, Any] | None = None,
              kind: str = "internal") -> Span: ...
    def activated(self, span: Span) -> contextlib.AbstractContextManager[None]: ...
    def shutdown(self) -> None: ...


class _NoSpan:
    def set(self, key: str, value: Any) -> None:
        pass

    def end(self, error: str | None = None) -> None:
        pass

    def traceparent(self) -> str | None:
        return None


class _NotTracing:
    enabled = False
    capture_content = False

    def start(self, name: str, *, parent: Span | None = None, attributes: Mapping[str, Any] | None = None,
              kind: str = "internal") -> Span:
        return NO_SPAN

    def activated(self, span: Span) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def shutdown(self) -> None:
        pass


NO_SPAN: Span = _NoSpan()
NOT_TRACING: Tracer = _NotTracing()


def _warn(line: str) -> None:
    print(f"midstream: {line}", file=sys.stderr, flush=True)


def from_environment(environ: Mapping[str, str] | None = None, *, warn: Callable[[str], None] = _warn,
                     version: str = "") -> Tracer:
    """The tracer the standard variables ask for; ``NOT_TRACING`` (nothing imported) unless they do."""
    env = os.environ if environ is None else environ
    wanted = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    if "otlp" not in wanted or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return NOT_TRACING
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip()
    if protocol != "http/protobuf":
        warn(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported (midstream exports http/protobuf); "
             "traces are off")
        return NOT_TRACING
    try:
        from midstream.tools import tracing_otel

        return tracing_otel.otlp_tracer(env, warn=warn, version=version)
    except ImportError as missing:  # the SDK, or its OTLP/HTTP exporter
        warn(f"OTEL_TRACES_EXPORTER=otlp, but OpenTelemetry is not installed ({missing.name}): "
             "pip install 'midstream[otel]'; traces are off")
        return NOT_TRACING
    except Exception as error:  # a bad endpoint or header value: traces off, the session goes on
        warn(f"traces are off: the OTLP exporter could not be set up ({type(error).__name__}: {error})")
        return NOT_TRACING


def _usage_attributes(usage: Mapping[str, Any]) -> dict[str, Any]:
    """The Messages API's usage as gen_ai.usage.*; every field is optional (llama.cpp omits some)."""
    names = {"input_tokens": "gen_ai.usage.input_tokens", "output_tokens": "gen_ai.usage.output_tokens",
             "cache_read_input_tokens": "gen_ai.usage.cache_read.input_tokens",
             "cache_creation_input_tokens": "gen_ai.usage.cache_creation.input_tokens"}
    return {names[key]: value for key, value in usage.items()
            if key in names and isinstance(value, int) and not isinstance(value, bool)}


class LoopTrace:
    """The loop's spans, opened and closed from the events it shows (and its turn's start and end)."""

    def __init__(self, tracer: Tracer, *, model: str, provider: str, max_tokens: int = 0,
                 conversation: str = "") -> None:
        self.tracer = tracer
        self.model, self.provider, self.max_tokens = model, provider, max_tokens
        self.conversation = conversation
        self._lock = threading.Lock()
        self._turn: Span | None = None
        self._chat: Span | None = None
        self._chat_started = 0.0
        self._first_chunk = False
        self._tools: dict[str, Span] = {}
        self._compaction: Span | None = None
        self._text: list[str] = []

    @property
    def enabled(self) -> bool:
        return self.tracer.enabled

    def _base(self, operation: str) -> dict[str, Any]:
        found = {"gen_ai.operation.name": operation, "gen_ai.provider.name": self.provider,
                 "gen_ai.request.model": self.model}
        if self.conversation:
            found["gen_ai.conversation.id"] = self.conversation
        return found

    def begin_turn(self, text: str) -> None:
        """The person sent a message: its ``invoke_agent`` span opens."""
        with self._lock:
            if self._turn is not None:
                self._turn.end()
            attributes = self._base("invoke_agent")
            if self.tracer.capture_content:
                attributes["gen_ai.input.messages"] = json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": text}]}], ensure_ascii=False)
            self._turn = self.tracer.start("invoke_agent", attributes=attributes)

    def end_turn(self, ended: TurnEnded | None) -> None:
        """The message is done with (or refused before it was sent): close what is open."""
        with self._lock:
            self._end_chat("the turn ended before this reply did")
            for span in self._tools.values():
                span.end("the turn ended before this call did")
            self._tools.clear()
            if self._turn is not None:
                if ended is not None and ended.stop_reason:
                    self._turn.set("midstream.stop_reason", ended.stop_reason)
                self._turn.end(None if ended is None or ended.ok else (ended.message or ended.stop_reason or "failed"))
            self._turn = None

    def traceparent(self) -> str | None:
        """W3C ``traceparent`` of the attempt in flight, for the model request's headers."""
        with self._lock:
            span = self._chat or self._turn
            return span.traceparent() if span is not None else None

    def running(self, call_id: str) -> contextlib.AbstractContextManager[None]:
        """While a call runs, its span is this thread's current one: what the call's libraries trace
        themselves (the MCP SDK's client spans) nests under it."""
        span = self.span_of_call(call_id)
        return self.tracer.activated(span) if span is not None else contextlib.nullcontext()

    def span_of_call(self, call_id: str) -> Span | None:
        """A call's ``execute_tool`` span, for its hooks to nest under."""
        with self._lock:
            return self._tools.get(call_id)

    @property
    def turn_span(self) -> Span | None:
        return self._turn

    def observing(self, renderer: Any) -> Any:
        """``renderer``, with every event it is shown seen here first; itself when tracing is off."""
        return renderer if not self.enabled else _Observed(renderer, self)

    def saw(self, event: Event) -> None:
        """Open and close spans from what the loop reports."""
        with self._lock:
            self._saw(event)

    def _saw(self, event: Event) -> None:
        match event:
            case RequestStarted(attempt=attempt, request_number=number):
                self._end_chat("superseded by another attempt")
                attributes = {**self._base("chat"), "midstream.attempt": attempt, "midstream.request": number}
                if self.max_tokens:
                    attributes["gen_ai.request.max_tokens"] = self.max_tokens
                self._chat = self.tracer.start(f"chat {self.model}", parent=self._turn, attributes=attributes,
                                               kind="client")
                self._chat_started, self._first_chunk, self._text = time.monotonic(), False, []
            case TextDelta() | ThinkingDelta() | ToolCallStarted() | ToolInputDelta() if self._chat is not None:
                if not self._first_chunk:
                    self._first_chunk = True
                    self._chat.set("gen_ai.response.time_to_first_chunk", time.monotonic() - self._chat_started)
                if isinstance(event, TextDelta) and self.tracer.capture_content:
                    self._text.append(event.text)
            case ToolCallReady(id=call_id, name=name, input=arguments):
                attributes = {**self._base("execute_tool"), "gen_ai.tool.name": name, "gen_ai.tool.call.id": call_id,
                              "gen_ai.tool.type": "function"}
                if self.tracer.capture_content:
                    attributes["gen_ai.tool.call.arguments"] = json.dumps(arguments, ensure_ascii=False)
                self._tools[call_id] = self.tracer.start(f"execute_tool {name}", parent=self._chat or self._turn,
                                                         attributes=attributes)
            case ToolFinished(id=call_id, result=result, reused=reused):
                if (span := self._tools.pop(call_id, None)) is not None:
                    if reused:
                        span.set("midstream.reused", True)
                    if self.tracer.capture_content:
                        span.set("gen_ai.tool.call.result", result.content)
                    span.end(result.content.splitlines()[0][:200] if result.is_error and result.content else
                             ("failed" if result.is_error else None))
            case RequestUsage(model=model, usage=usage) if self._chat is not None:
                if model:
                    self._chat.set("gen_ai.response.model", model)
                for key, value in _usage_attributes(usage).items():
                    self._chat.set(key, value)
            case TurnCommitted(stop_reason=reason) if self._chat is not None:
                if reason:
                    self._chat.set("gen_ai.response.finish_reasons", [reason])
                if self._text:
                    self._chat.set("gen_ai.output.messages", json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": "".join(self._text)}]}],
                        ensure_ascii=False))
                self._chat.end()
                self._chat = None
            case TurnRolledBack(reason=reason, retry_in=retry_in) if self._chat is not None:
                self._chat.set("midstream.rolled_back", True)
                self._chat.set("midstream.retried", retry_in is not None)
                self._end_chat(reason)
            case CompactionStarted(reason=reason, tokens=tokens):
                self._compaction = self.tracer.start("compact_context", parent=self._turn, attributes={
                    "midstream.compaction.reason": reason, "midstream.compaction.tokens_before": tokens})
            case Compacted(after=after, summarised=summarised, usage=usage) if self._compaction is not None:
                for key, value in {"midstream.compaction.tokens_after": after,
                                   "midstream.compaction.summarised": summarised, **_usage_attributes(usage)}.items():
                    self._compaction.set(key, value)
                self._compaction.end()
                self._compaction = None
            case CompactionFailed(message=message) if self._compaction is not None:
                self._compaction.end(message)
                self._compaction = None
            case ContextCleared(results=results, inputs=inputs, before=before, after=after):
                self.tracer.start("clear_tool_results", parent=self._turn, attributes={
                    "midstream.cleared.results": results, "midstream.cleared.inputs": inputs,
                    "midstream.cleared.tokens_before": before,
                    "midstream.cleared.tokens_after": after}).end()
            case _:
                pass

    def _end_chat(self, error: str | None) -> None:
        if self._chat is not None:
            self._chat.end(error)
            self._chat = None


class _Observed:
    """A renderer whose events the trace sees first; everything else is the renderer's own."""

    def __init__(self, renderer: Any, trace: LoopTrace) -> None:
        self._renderer, self._trace = renderer, trace

    def show(self, event: Event) -> None:
        try:
            self._trace.saw(event)
        except Exception:  # tracing must never take the turn down
            pass
        self._renderer.show(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._renderer, name)
