"""The loop's spans, by the GenAI conventions, with the SDK's in-memory exporter (tools/tracing.py)."""

from __future__ import annotations

import socket
import threading

import pytest
from midstream.tools.events import (
    Compacted,
    CompactionStarted,
    RequestStarted,
    RequestUsage,
    TextDelta,
    ToolCallReady,
    ToolFinished,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)
from midstream.tools.registry import ToolResult
from midstream.tools.tracing import NOT_TRACING, LoopTrace, from_environment
from midstream.tools.tracing_otel import tracer_with
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _trace(exported: InMemorySpanExporter, **kwargs) -> LoopTrace:
    return LoopTrace(tracer_with(exported, **kwargs), model="claude-test", provider="anthropic", max_tokens=1000,
                     conversation="sess-1")


def _by_name(exported: InMemorySpanExporter) -> dict:
    return {span.name: span for span in exported.get_finished_spans()}


def test_a_turn_is_an_agent_span_with_a_chat_span_whose_tool_span_starts_inside_it(exported):
    trace = _trace(exported)
    trace.begin_turn("fix the test")
    for event in (RequestStarted(1, 1), TextDelta(0, "Looking"),
                  ToolCallReady(1, "t1", "read_file", {"path": "a.py"})):
        trace.saw(event)
    assert trace.traceparent() is not None
    trace.saw(RequestUsage("claude-test-2", {"input_tokens": 120, "output_tokens": 7, "cache_read_input_tokens": 100,
                                             "cache_creation_input_tokens": 20}))
    trace.saw(TurnCommitted("tool_use"))
    trace.saw(ToolFinished("t1", "read_file", ToolResult("1 line"), 0.01))
    trace.end_turn(TurnEnded("end_turn", True))
    spans = _by_name(exported)
    agent, chat, tool = spans["invoke_agent"], spans["chat claude-test"], spans["execute_tool read_file"]
    assert agent.parent is None
    assert chat.parent.span_id == agent.context.span_id and tool.parent.span_id == chat.context.span_id
    assert chat.context.trace_id == tool.context.trace_id == agent.context.trace_id
    assert chat.start_time < tool.start_time < chat.end_time < tool.end_time
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "anthropic"
    assert chat.attributes["gen_ai.request.model"] == "claude-test"
    assert chat.attributes["gen_ai.response.model"] == "claude-test-2"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 120 and chat.attributes["gen_ai.usage.output_tokens"] == 7
    assert chat.attributes["gen_ai.usage.cache_read.input_tokens"] == 100
    assert chat.attributes["gen_ai.usage.cache_creation.input_tokens"] == 20
    assert tuple(chat.attributes["gen_ai.response.finish_reasons"]) == ("tool_use",)
    assert chat.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert tool.attributes["gen_ai.tool.name"] == "read_file" and tool.attributes["gen_ai.tool.call.id"] == "t1"
    assert agent.attributes["gen_ai.conversation.id"] == "sess-1"
    # No prompt, output or tool text unless the person opts in.
    keys = [key for span in spans.values() for key in span.attributes]
    assert not any(key.endswith(("messages", "arguments", "result")) for key in keys)


def test_each_attempt_is_a_span_and_a_rolled_back_one_says_so(exported):
    trace = _trace(exported)
    trace.begin_turn("hi")
    trace.saw(RequestStarted(1, 1))
    trace.saw(ToolCallReady(0, "t1", "bash", {"command": "ls"}))
    trace.saw(TurnRolledBack("the stream ended before message_stop", 1, 5, 0.1))
    trace.saw(ToolFinished("t1", "bash", ToolResult("[exit status 1]", is_error=True), 0.01))
    trace.saw(RequestStarted(2, 1))
    trace.saw(TurnCommitted("end_turn"))
    trace.end_turn(TurnEnded("end_turn", True))
    chats = [s for s in exported.get_finished_spans() if s.name.startswith("chat ")]
    assert [s.attributes["midstream.attempt"] for s in chats] == [1, 2]
    assert chats[0].status.status_code.name == "ERROR" and chats[0].attributes["midstream.rolled_back"] is True
    assert "message_stop" in chats[0].status.description
    assert chats[1].status.status_code.name == "UNSET"
    (tool,) = [s for s in exported.get_finished_spans() if s.name == "execute_tool bash"]
    assert tool.parent.span_id == chats[0].context.span_id and tool.status.status_code.name == "ERROR"


def test_an_interrupted_turn_closes_every_open_span_as_failed(exported):
    trace = _trace(exported)
    trace.begin_turn("hi")
    trace.saw(RequestStarted(1, 1))
    trace.saw(ToolCallReady(0, "t1", "bash", {"command": "sleep 9"}))
    trace.end_turn(TurnEnded("interrupted", False, "interrupted; the conversation is saved"))
    spans = _by_name(exported)
    assert set(spans) == {"invoke_agent", "chat claude-test", "execute_tool bash"}
    assert all(span.status.status_code.name == "ERROR" for span in spans.values())


def test_compaction_is_a_span_of_its_turn(exported):
    trace = _trace(exported)
    trace.begin_turn("hi")
    trace.saw(CompactionStarted("auto", 150_000))
    trace.saw(Compacted("auto", 150_000, 9_000, 40, 4, {"input_tokens": 150_000, "output_tokens": 900}))
    trace.end_turn(TurnEnded("end_turn", True))
    spans = _by_name(exported)
    compaction = spans["compact_context"]
    assert compaction.parent.span_id == spans["invoke_agent"].context.span_id
    assert compaction.attributes["midstream.compaction.tokens_after"] == 9_000
    assert compaction.attributes["gen_ai.usage.output_tokens"] == 900


def test_text_goes_into_spans_only_when_the_person_opts_in(exported):
    trace = _trace(exported, capture_content=True)
    trace.begin_turn("the secret prompt")
    trace.saw(RequestStarted(1, 1))
    trace.saw(TextDelta(0, "the reply"))
    trace.saw(ToolCallReady(1, "t1", "bash", {"command": "ls"}))
    trace.saw(TurnCommitted("tool_use"))
    trace.saw(ToolFinished("t1", "bash", ToolResult("a.py"), 0.0))
    trace.end_turn(TurnEnded("end_turn", True))
    spans = _by_name(exported)
    assert "the secret prompt" in spans["invoke_agent"].attributes["gen_ai.input.messages"]
    assert "the reply" in spans["chat claude-test"].attributes["gen_ai.output.messages"]
    assert spans["execute_tool bash"].attributes["gen_ai.tool.call.result"] == "a.py"


@pytest.mark.parametrize("env", [{}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_TRACES_EXPORTER": "console"},
                                 {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}])
def test_traces_are_off_unless_otlp_is_asked_for(env: dict):
    said: list[str] = []
    assert from_environment(env, warn=said.append) is NOT_TRACING and said == []


def test_an_unsupported_protocol_is_one_line_and_traces_stay_off():
    said: list[str] = []
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert from_environment(env, warn=said.append) is NOT_TRACING
    assert len(said) == 1 and "grpc" in said[0]


def test_a_collector_that_is_not_there_is_one_warning_line_and_shutdown_returns(monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
           "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the SDK's exporter reads the variables itself
    said: list[str] = []
    tracer = from_environment(env, warn=said.append)
    assert tracer.enabled
    for round_ in range(2):
        span = tracer.start(f"span {round_}")
        span.end()
        tracer.provider.force_flush(5000)  # type: ignore[attr-defined]
    done = threading.Thread(target=tracer.shutdown)
    done.start()
    done.join(30)
    assert not done.is_alive()
    assert len(said) == 1 and f"127.0.0.1:{port}" in said[0] and said[0].startswith("warning: traces could not")


def test_while_a_call_runs_its_span_is_the_threads_current_one(exported):
    """So libraries that trace themselves (the MCP SDK's client spans) nest under the call."""
    from opentelemetry import trace as otel

    trace = _trace(exported)
    trace.begin_turn("hi")
    trace.saw(RequestStarted(1, 1))
    trace.saw(ToolCallReady(0, "t1", "mcp__srv__read", {}))
    seen = {}

    def in_the_worker() -> None:
        with trace.running("t1"):
            seen["inside"] = otel.get_current_span().get_span_context().span_id
        seen["after"] = otel.get_current_span().get_span_context().span_id

    worker = threading.Thread(target=in_the_worker)
    worker.start()
    worker.join()
    trace.saw(ToolFinished("t1", "mcp__srv__read", ToolResult("ok"), 0.0))
    trace.end_turn(TurnEnded("end_turn", True))
    (tool,) = [s for s in exported.get_finished_spans() if s.name.startswith("execute_tool")]
    assert seen == {"inside": tool.context.span_id, "after": 0}


def test_without_the_otel_extra_traces_are_one_line_and_off(monkeypatch: pytest.MonkeyPatch):
    import sys

    # As if the extra were not installed (opentelemetry-api alone often is, brought by another package).
    monkeypatch.delitem(sys.modules, "midstream.tools.tracing_otel", raising=False)
    for name in ("opentelemetry.sdk", "opentelemetry.sdk.trace",
                 "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
        monkeypatch.setitem(sys.modules, name, None)
    said: list[str] = []
    assert from_environment({"OTEL_TRACES_EXPORTER": "otlp"}, warn=said.append) is NOT_TRACING
    assert len(said) == 1 and "pip install 'midstream[otel]'" in said[0]
