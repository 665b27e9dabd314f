"""Traces through the real OTLP/HTTP exporter, from the real program, to a receiver on 127.0.0.1 that
decodes the protobuf; and with the variables unset, OpenTelemetry is not even imported."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.helpers import program_env

pytestmark = pytest.mark.process


class Receiver:
    """A small OTLP/HTTP collector: POST /v1/traces, protobuf in, every span kept."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.paths.append(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    receiver.resources.append(_attributes(resource_spans.resource.attributes))
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            receiver.spans.append({
                                "name": span.name, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(), "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano, "status": span.status.code,
                                "attributes": _attributes(span.attributes), "kind": span.kind})
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def named(self, prefix: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["name"].startswith(prefix)]


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        value = getattr(pair.value, kind)
        found[pair.key] = list(v.string_value for v in value.values) if kind == "array_value" else value
    return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def _otel(receiver: Receiver) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "midstream-under-test"}


def _run(workspace: Path, server: ScriptedServer, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args, "-m", "midstream", "--isolation", "none", "--model", "claude-test",
                           "-p", "list the files"], cwd=workspace, capture_output=True, text=True, timeout=90,
                          env=program_env(ANTHROPIC_BASE_URL=server.url, **env))


def test_p_exports_the_whole_trace_before_it_exits(workspace: Path, receiver: Receiver, tmp_path: Path):
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/bash\ncat > /dev/null\n")
    hook.chmod(0o755)
    settings = Path(os.environ["XDG_CONFIG_HOME"]) / "midstream" / "settings.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text(f'[[hooks.PreToolUse]]\nhooks = [{{ type = "command", command = "{hook}" }}]\n')
    dispatched = reply(ToolUse("t1", "bash", {"command": "echo hi"}), Text("…and more text after the call", delay=0.02),
                       usage={"input_tokens": 42, "output_tokens": 9})
    # Keep the reply streaming after the call is dispatched, so its span starts inside the chat span.
    server = ScriptedServer([{"status": 529, "error": {"type": "overloaded_error", "message": "busy"},
                              "headers": {"retry-after": "0"}}, dispatched, reply(Text("Done."))])
    with server:
        done = _run(workspace, server, _otel(receiver))
    assert done.returncode == 0, done.stderr
    assert "traces could not" not in done.stderr
    # Everything is in by the time the process has exited: nothing arrives later.
    names = sorted(span["name"] for span in receiver.spans)
    assert names == ["chat claude-test", "chat claude-test", "chat claude-test", "execute_tool bash",
                     "hook PreToolUse", "invoke_agent"], names
    assert set(receiver.paths) == {"/v1/traces"}
    assert all(r["service.name"] == "midstream-under-test" for r in receiver.resources)
    (agent,) = receiver.named("invoke_agent")
    chats = sorted(receiver.named("chat "), key=lambda span: span["start"])
    (tool,) = receiver.named("execute_tool")
    (hook_span,) = receiver.named("hook ")
    assert agent["parent"] == "" and {span["trace_id"] for span in receiver.spans} == {agent["trace_id"]}
    assert all(chat["parent"] == agent["span_id"] for chat in chats)
    refused, dispatching, last = chats
    assert refused["status"] == 2 and refused["attributes"]["midstream.rolled_back"] is True  # ERROR, retried
    assert [c["attributes"]["midstream.attempt"] for c in chats] == [1, 2, 1]
    assert tool["parent"] == dispatching["span_id"] and hook_span["parent"] == tool["span_id"]
    assert dispatching["start"] < tool["start"] < dispatching["end"]  # mid-stream dispatch, in the trace
    assert dispatching["attributes"]["gen_ai.usage.input_tokens"] == 42
    assert dispatching["attributes"]["gen_ai.usage.output_tokens"] == 9
    assert dispatching["attributes"]["gen_ai.response.finish_reasons"] == ["tool_use"]
    assert dispatching["attributes"]["gen_ai.operation.name"] == "chat" and dispatching["kind"] == 3  # CLIENT
    assert tool["attributes"]["gen_ai.tool.call.id"] == "t1"
    # Each request carried its own attempt's span as traceparent.
    parents = [request["headers"].get("traceparent", "").rsplit("-", 1) for request in server.requests]
    assert [head for head, _ in parents] == [f"00-{agent['trace_id']}-{chat['span_id']}" for chat in chats]
    assert all(int(flags, 16) & 1 for _, flags in parents)  # sampled
    # No prompt or output text without the opt-in.
    assert "list the files" not in str(receiver.spans) and "more text" not in str(receiver.spans)


def test_a_collector_that_refuses_costs_one_warning_line_and_no_hang(workspace: Path, tmp_path: Path):
    server = ScriptedServer([reply(Text("Done."))])
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    with server:
        done = _run(workspace, server, env)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "traces" in line]
    assert len(warnings) == 1 and warnings[0].startswith("midstream: warning: traces could not be exported")
    assert "Traceback" not in done.stderr


def test_without_the_variables_opentelemetry_is_not_imported(workspace: Path):
    server = ScriptedServer([reply(Text("Done."))])
    with server:
        done = _run(workspace, server, {}, "-X", "importtime")
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "midstream.agent" in imported  # the measurement covers the program
    assert not [name for name in imported if name.startswith(("opentelemetry", "midstream.tools.tracing_otel"))]
    assert server.requests and "traceparent" not in server.requests[0]["headers"]
