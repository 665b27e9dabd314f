"""A real HTTP server on 127.0.0.1 that answers POST /v1/messages with scripted SSE replies.

It ships with midstream (not only with its tests) because ``midstream --demo`` runs against it,
through exactly the code path a real session takes; the tests drive the loop against it too.

A scenario is a list of replies, one consumed per request. A reply is a plain dict (so a scenario
can live in a JSON file):

    {"status": 200,                      # anything else sends {"type":"error","error":…} as JSON
     "headers": {"retry-after": "1"},     # extra response headers
     "error": {"type": "overloaded_error", "message": "…"},   # the body for a non-200 status
     "events": [ {"type": "message_start", …, "_delay": 0.05}, … ],   # "_delay": seconds before
     "drop_after": 3,                     # close the socket after sending 3 events
     "end_after": 3,                      # end the body cleanly after 3 events (no message_stop)
     "stall_after": 3, "stall": 5.0,      # go silent after 3 events for 5 s, then drop
     "burst": true,                       # pre-render all events and write them in 64 KB pieces
                                          # (throughput benchmarks; delays and faults are ignored)
     "line_ending": "\r",                 # frame events with these line endings instead of "\n"
     "sse": "event: …\ndata: …\n\n",      # send exactly this body (recorded streams), nothing else,
     "chunk": 7}                          # ...in HTTP chunks of this many bytes

``reply(Text("hi"), ToolUse("t1", "read_file", {"path": "a"}))`` builds the events of a
well-formed reply; ``events[i]["_before"]`` may be a callable (tests only) run before sending it.

``ScriptedServer(…, context_limit=N)`` answers a request whose prompt is over N tokens (counted as
the cache model counts them) with the API's real ``prompt is too long`` 400, without consuming a
reply, and reports every other request's size as its ``input_tokens`` when there is no cache model.
``respond(body)`` answers requests once the scripted replies run out (long sessions, benchmarks).

``python -m midstream.tools.testing.scripted_server scenario.json`` serves a JSON scenario from its own process and
prints its URL. Every request body is recorded in ``server.requests``; what was sent is appended to
``server.log`` (``sent:message_stop``, ``sent:content_block_stop:1``, ``client_closed`` …), a list
tests can share with their tools to prove orderings without timing.

A request to ``/v1/chat/completions`` or ``/chat/completions`` gets the same scenario as OpenAI
Chat Completions chunks (``tools/testing/scripted_chat.py``), faults at the same places.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from midstream.tools.conversation.tokens import prompt_tokens
from midstream.tools.testing.cache_model import CacheModel
from midstream.tools.testing.scripted_chat import ChatRenderer, as_messages_body, error_body, is_chat_path, render_chat

__all__ = ["Raw", "ScriptedServer", "Text", "Thinking", "ToolUse", "reply", "split"]


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class Text:
    text: str
    chunk: int = 16
    delay: float = 0.0


@dataclass
class Thinking:
    thinking: str
    signature: str = "sig-test"
    chunk: int = 16


@dataclass
class ToolUse:
    id: str
    name: str
    input: dict[str, Any] | None = None
    raw_json: str | None = None  # send this instead of json.dumps(input), e.g. invalid JSON
    chunk: int = 20
    delay: float = 0.0
    deltas: list[str] | None = None  # exact input_json_delta pieces
    stop: bool = True  # False: the block never gets content_block_stop (cut off)


@dataclass
class Raw:
    """A content block of any type, sent as is (start + stop)."""

    block: dict[str, Any]


def _block_events(index: int, block: Text | Thinking | ToolUse | Raw) -> list[dict[str, Any]]:
    start = {"type": "content_block_start", "index": index}
    stop = {"type": "content_block_stop", "index": index}
    match block:
        case Text():
            deltas = [
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece},
                 "_delay": block.delay}
                for piece in split(block.text, block.chunk)
            ]
            return [{**start, "content_block": {"type": "text", "text": ""}}, *deltas, stop]
        case Thinking():
            deltas = [
                {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": p}}
                for p in split(block.thinking, block.chunk)
            ]
            signature = {"type": "content_block_delta", "index": index,
                         "delta": {"type": "signature_delta", "signature": block.signature}}
            return [{**start, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
                    *deltas, signature, stop]
        case ToolUse():
            raw = block.raw_json if block.raw_json is not None else json.dumps(block.input or {})
            pieces = block.deltas if block.deltas is not None else split(raw, block.chunk)
            deltas = [
                {"type": "content_block_delta", "index": index,
                 "delta": {"type": "input_json_delta", "partial_json": p}, "_delay": block.delay}
                for p in pieces
            ]
            first = {**start, "content_block": {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}}
            return [first, *deltas, stop] if block.stop else [first, *deltas]
        case Raw():
            return [{**start, "content_block": block.block}, stop]
    raise TypeError(block)


def reply(
    *blocks: Text | Thinking | ToolUse | Raw,
    stop_reason: str | None = None,
    usage: dict[str, int] | None = None,
    pings: bool = True,
    model: str = "scripted",
) -> dict[str, Any]:
    """The events of one well-formed reply; stop_reason defaults to tool_use when a tool is called.
    ``model`` is the model message_start says ran it (what costs are priced by)."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(isinstance(b, ToolUse) for b in blocks) else "end_turn"
    usage = usage or {"input_tokens": 10, "output_tokens": 5}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}},
    ]
    if pings:
        events.append({"type": "ping"})
    for index, block in enumerate(blocks):
        events += _block_events(index, block)
    events.append({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                   "usage": {"output_tokens": usage["output_tokens"]}})
    events.append({"type": "message_stop"})
    return {"events": events}


def _with_usage(event: dict[str, Any], usage: dict[str, int]) -> dict[str, Any]:
    if event.get("type") != "message_start":
        return event
    message = event["message"]
    return {**event, "message": {**message, "usage": {**message.get("usage", {}), **usage}}}


def _render(events: list[dict[str, Any]]) -> bytes:
    wire = ({k: v for k, v in e.items() if not k.startswith("_")} for e in events)
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in wire)


def _describe(event: dict[str, Any]) -> str:
    kind = str(event.get("type"))
    return f"sent:{kind}:{event['index']}" if "index" in event and kind != "content_block_delta" else f"sent:{kind}"


@dataclass
class ScriptedServer:
    """Serve ``replies`` in order on an ephemeral loopback port; use as a context manager."""

    replies: list[dict[str, Any]]
    log: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    cache: CacheModel | None = None  # report prompt-cache usage the way the API accounts it
    connections: int = 0  # TCP connections accepted, to show that one is reused
    keep_bodies: bool = True  # False: read request bodies but record {} (benchmarks with huge histories)
    context_limit: int | None = None  # a longer prompt gets the API's "prompt is too long" 400
    respond: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # replies once the script runs out

    def __post_init__(self) -> None:
        for scripted in self.replies:
            if scripted.get("burst"):  # render up front, so a benchmark times the client, not json.dumps
                scripted["_wire"] = _render(scripted.get("events", []))
                scripted["_chat_wire"] = render_chat(scripted.get("events", []))
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # A connection the client resets between select() and accept() leaves a blocking accept() waiting
        # for the next one, and shutdown() then waits for ever: a non-blocking listener just skips it.
        self._httpd.socket.setblocking(False)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="scripted-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"  # host is a str for an AF_INET server

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_reply(self, body: dict[str, Any], headers: dict[str, str], started: float = 0.0,
                   path: str = "/v1/messages") -> dict[str, Any] | None:
        chat = is_chat_path(path)
        with self._lock:
            record = {"body": body, "headers": headers, "time": time.monotonic(), "started": started, "path": path}
            self.requests.append(record)
            self.log.append(f"request:{len(self.requests)}")
            if self.context_limit is not None:
                tokens = prompt_tokens(as_messages_body(body) if chat else body)
                record["prompt_tokens"] = tokens
                if tokens > self.context_limit:
                    self.log.append("too_long")
                    return {"status": 400, "error": {"type": "invalid_request_error", "message":
                            f"prompt is too long: {tokens} tokens > {self.context_limit} maximum"}}
            scripted = self.replies.pop(0) if self.replies else None
        if scripted is None and self.respond is not None:
            scripted = self.respond(body)
        if scripted is not None and self.cache is None and self.context_limit is not None and scripted.get("events"):
            record["usage"] = usage = {"input_tokens": tokens}  # counted above, against the limit
            scripted = {**scripted, "events": [_with_usage(e, usage) for e in scripted["events"]]}
        if scripted is not None and self.cache is not None and scripted.get("events") and not chat:
            record["usage"] = usage = self.cache.usage(body)
            scripted = {**scripted, "events": [_with_usage(e, usage) for e in scripted["events"]]}
        return scripted


def _handler_for(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def handle(self) -> None:
            server.connections += 1
            try:
                super().handle()
            except (ConnectionResetError, BrokenPipeError):  # the client went away between requests
                pass

        def do_POST(self) -> None:
            started = time.monotonic()  # the request line and headers are in: its first bytes arrived
            length = int(self.headers.get("content-length", 0))
            raw = self.rfile.read(length)
            body = json.loads(raw or b"{}") if server.keep_bodies else {}
            scripted = server.next_reply(body, dict(self.headers.items()), started, self.path)
            if scripted is None:
                scripted = {"status": 500, "error": {"type": "api_error", "message": "scenario has no more replies"}}
            status = scripted.get("status", 200)
            if status != 200:
                self._send_error(status, scripted)
                return
            try:
                self._send_stream(scripted)
            except (BrokenPipeError, ConnectionResetError):
                server.log.append("client_closed")
                self.close_connection = True

        def _send_error(self, status: int, scripted: dict[str, Any]) -> None:
            error = scripted.get("error", {"type": "api_error", "message": "scripted failure"})
            payload = json.dumps({"type": "error", "error": error}).encode()
            if is_chat_path(self.path):
                payload = error_body(error)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", f"req_scripted_{len(server.requests)}")
            for name, value in scripted.get("headers", {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            server.log.append(f"sent:http_{status}")

        def _send_stream(self, scripted: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("request-id", f"req_scripted_{len(server.requests)}")
            for name, value in scripted.get("headers", {}).items():
                self.send_header(name, value)
            self.end_headers()
            events = scripted.get("events", [])
            chat = ChatRenderer() if is_chat_path(self.path) else None
            if scripted.get("burst"):
                self._burst(scripted["_chat_wire" if chat else "_wire"])
                return
            if "sse" in scripted:
                self._burst(scripted["sse"].encode(), scripted.get("chunk", 65536))
                return
            line_ending = scripted.get("line_ending", "\n").encode()
            for number, event in enumerate(events):
                if number == scripted.get("drop_after"):
                    self._drop()
                    return
                if number == scripted.get("end_after"):
                    break
                if number == scripted.get("stall_after"):
                    server.log.append("stalled")
                    time.sleep(scripted.get("stall", 5.0))
                    self._drop()
                    return
                if delay := event.get("_delay"):
                    time.sleep(delay)
                if before := event.get("_before"):
                    before()
                wire = {k: v for k, v in event.items() if not k.startswith("_")}
                if chat is not None:
                    for line, data in chat.render(wire):
                        server.log.append(line)  # logged before the write, so the client cannot act first
                        self._chunk(data.replace(b"\n", line_ending))
                    continue
                server.log.append(_describe(wire))  # logged before the write, so the client cannot act first
                self._chunk(f"event: {wire['type']}\ndata: {json.dumps(wire)}\n\n".encode().replace(b"\n", line_ending))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _burst(self, wire: bytes, size: int = 65536) -> None:
            server.log.append("sent:burst")
            for start in range(0, len(wire), size):
                self._chunk(wire[start : start + size])
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _drop(self) -> None:
            server.log.append("dropped")
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


def main() -> None:
    """Serve the replies of a JSON scenario file until interrupted; print the URL first."""
    import sys

    with open(sys.argv[1], encoding="utf-8") as f:
        replies = json.load(f)
    with ScriptedServer(replies) as server:
        print(server.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
