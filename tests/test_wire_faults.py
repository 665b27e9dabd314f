"""What a server can do to the wire, through the real program against raw loopback servers (every byte ours).

Malformed chunks and events, split surrogate pairs, headers that trickle, proxies, stray bytes on a
kept-alive connection, late ``content_block_stop``s, servers' own names for "context full". Each
session must end as it should, its history valid, and ``--continue`` must work three times after it.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.testing.raw_server import Connection, RawRequest, RawServer, Script, http, reply_bytes, stream
from midstream.tools.testing.raw_server import chat as chat_body
from midstream.tools.testing.raw_server import sse as sse_body
from midstream.tools.testing.scripted_server import Text, ToolUse, reply

from tests.helpers import CHAT_SHAPES, chat_chunk, midstream, wait_until

pytestmark = pytest.mark.process

FAST = ["--isolation", "none", "--grace", "0"]
WIRES = ["anthropic", "openai"]


def _env(provider: str, url: str, **extra: str) -> dict[str, str]:
    if provider == "openai":
        return {"OPENAI_BASE_URL": url + "/v1", **extra}
    return {"ANTHROPIC_BASE_URL": url, **extra}


def _run(provider: str, server: RawServer, workspace: Path, *args: str, **env: str):
    return midstream([*FAST, "--provider", provider, *args], workspace, _env(provider, server.url, **env))


def _ok(text: str = "ok", provider: str = "anthropic") -> bytes:
    return reply_bytes(provider, reply(Text(text))["events"])


def _chat_problems(messages: list[dict]) -> list[str]:
    """What a Chat Completions server would refuse: a tool message that answers no open call, a call
    left unanswered, a conversation that ends in the assistant's turn."""
    problems, open_calls = [], set()
    for number, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            if message.get("tool_call_id") not in open_calls:
                problems.append(f"message {number}: a tool result for no open call")
            open_calls.discard(message.get("tool_call_id"))
            continue
        if open_calls:
            problems.append(f"message {number}: calls {sorted(open_calls)} unanswered")
        open_calls = {c["id"] for c in message.get("tool_calls") or []} if role == "assistant" else set()
    if not messages or messages[-1].get("role") not in ("user", "tool"):
        problems.append("the conversation does not end with the person or a tool")
    return problems


def _messages(request: RawRequest) -> list[dict]:
    return request.body["messages"]


def _valid(server: RawServer) -> None:
    for number, request in enumerate(server.requests):
        chat = request.path.endswith("/chat/completions")
        problems = (_chat_problems if chat else history_problems)(_messages(request))
        assert problems == [], number


def _continues_three_times(provider: str, workspace: Path) -> list[RawRequest]:
    """Three ``--continue -p`` runs, each accepted, each sending a valid history; their requests."""
    seen = []
    for turn in range(3):
        with RawServer(Script([_ok(f"again {turn}", provider)])) as server:
            done = _run(provider, server, workspace, "--continue", "-p", f"go on {turn}")
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr and f"again {turn}" in done.stdout
            _valid(server)
            seen += server.requests
    return seen


# -- one shape check before each wire's translator ---------------------------------------------

def _events(*middle: dict) -> list[dict]:
    start = reply(Text("x"))["events"][0]
    return [start, *middle]


MESSAGES_SHAPES = {
    "delta is a string": {"type": "content_block_delta", "index": 0, "delta": "hello"},
    "the block is a string": {"type": "content_block_start", "index": 0, "content_block": "text"},
    "index is a list": {"type": "content_block_start", "index": [0], "content_block": {"type": "text", "text": ""}},
    "a tool id is an object": {"type": "content_block_start", "index": 0,
                               "content_block": {"type": "tool_use", "id": {"v": 1}, "name": "bash", "input": {}}},
    "usage is a string": {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": "lots"},
    "a token count is a string": {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                  "usage": {"output_tokens": "5"}},
    "stop_reason is a number": {"type": "message_delta", "delta": {"stop_reason": 1}},
}


def _broken(provider: str, shape: dict) -> bytes:
    if provider == "openai":
        return stream(chat_body([chat_chunk({"role": "assistant", "content": ""}), shape]))
    return stream(sse_body(_events(shape, {"type": "message_stop"})))


@pytest.mark.parametrize("provider", WIRES)
def test_every_malformed_shape_is_a_retried_malformed_stream_and_the_conversation_goes_on(workspace, provider):
    """One conversation, each of its turns answered first with another malformed shape."""
    shapes = CHAT_SHAPES if provider == "openai" else MESSAGES_SHAPES
    for turn, (name, shape) in enumerate(shapes.items()):
        with RawServer(Script([_broken(provider, shape), _ok(f"recovered {turn}", provider)])) as server:
            done = _run(provider, server, workspace, *(["--continue"] if turn else []), "-p", f"turn {turn}")
        assert "Traceback" not in done.stderr, (name, done.stderr)
        assert done.returncode == 0 and f"recovered {turn}" in done.stdout, (name, done.stderr)
        assert "malformed" in done.stderr and len(server.requests) == 2, name
        _valid(server)
    _continues_three_times(provider, workspace)


# -- text is kept as the wire's strings until it is whole ---------------------------------------

def _surrogate_reply(provider: str, pieces: list[str]) -> bytes:
    """Text deltas written with JSON's \\u escapes, exactly as a server that splits UTF-16 sends them."""
    if provider == "openai":
        chunks = [chat_chunk({"role": "assistant", "content": ""})]
        raw = [json.dumps(c) for c in chunks] + [
            '{"id":"c","choices":[{"index":0,"delta":{"content":"' + p + '"},"finish_reason":null}]}' for p in pieces]
        raw.append('{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
        return stream(chat_body(raw))
    events = reply(Text("x"))["events"]
    start, ping, block_start = events[0], events[1], events[2]
    lines = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in (start, ping, block_start)]
    lines += ['event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              '"delta":{"type":"text_delta","text":"' + p + '"}}\n\n' for p in pieces]
    lines += [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events[4:]]
    return stream("".join(lines).encode())


@pytest.mark.parametrize("provider", WIRES)
def test_a_surrogate_pair_split_across_deltas_is_one_character_and_a_lone_half_is_replaced(workspace, provider):
    pieces = ["smile \\ud83d", "\\ude00 done", " lone \\udc00 half \\ud83d"]
    with RawServer(Script([_surrogate_reply(provider, pieces)])) as server:
        done = _run(provider, server, workspace, "-p", "hi")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "smile 😀 done lone \ufffd half \ufffd" in done.stdout
    later = _continues_three_times(provider, workspace)
    sent = json.dumps(_messages(later[0]), ensure_ascii=False)
    assert "smile 😀 done lone \ufffd half \ufffd" in sent


# -- bounded from the first byte ------------------------------------------------------------------

@pytest.mark.parametrize("provider", WIRES)
def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_request_timeout(workspace, provider):
    cut: list[str] = []

    def trickle(request: RawRequest, connection: Connection) -> str:
        try:  # 100 s of headers if nobody cuts them; the run's own timeout is 60 s
            connection.trickle(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-slow: " + b"a" * 1000, 0.1)
        except OSError:
            cut.append("cut")
        return "close"

    with RawServer(Script([trickle, _ok("second try", provider)])) as server:
        done = _run(provider, server, workspace, "-p", "hi", "--request-timeout", "2", "--idle-timeout", "30")
    assert done.returncode == 0 and "second try" in done.stdout, done.stderr
    assert "request time limit" in done.stderr and "--request-timeout" in done.stderr
    assert wait_until(lambda: cut == ["cut"], 10)


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("provider", WIRES)
def test_a_loopback_service_is_never_reached_through_a_proxy(workspace, provider):
    dead = f"http://127.0.0.1:{_dead_port()}"
    with RawServer(Script([_ok("direct", provider)])) as server:
        done = _run(provider, server, workspace, "-p", "hi", HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead,
                    http_proxy=dead)
    assert done.returncode == 0 and "direct" in done.stdout, done.stderr


def test_a_dead_proxy_is_named_as_the_proxy(workspace):
    dead = f"http://127.0.0.1:{_dead_port()}"
    done = midstream([*FAST, "-p", "hi", "--max-attempts", "1"], workspace,
                     {"ANTHROPIC_BASE_URL": "http://model.invalid", "HTTP_PROXY": dead})
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert f"the proxy {dead}" in line and "model.invalid" in line and "NO_PROXY" in line


def test_a_live_proxy_still_carries_requests_to_a_remote_service(workspace):
    with RawServer(Script([_ok("via the proxy")])) as proxy:
        done = midstream([*FAST, "-p", "hi"], workspace,
                         {"ANTHROPIC_BASE_URL": "http://model.invalid", "HTTP_PROXY": proxy.url})
    assert done.returncode == 0 and "via the proxy" in done.stdout, done.stderr
    assert proxy.requests[0].path == "http://model.invalid/v1/messages"


@pytest.mark.parametrize("provider", WIRES)
def test_stray_bytes_left_on_a_kept_alive_connection_are_never_read_as_the_next_answer(workspace, provider):
    call = reply_bytes(provider, reply(ToolUse("t1", "bash", {"command": "echo ran"}))["events"])
    stray = http(200, b"data: [DONE]\n\n", "text/event-stream")  # would read as an empty, finished reply
    with RawServer(Script([call + stray, _ok("the real answer", provider)])) as server:
        done = _run(provider, server, workspace, "-p", "run it")
    assert done.returncode == 0 and "the real answer" in done.stdout, done.stderr
    assert len(server.requests) == 2 and server.connections == 2
    _valid(server)


# -- dispatch when a call is complete, however the server frames it -----------------------------

def _tool_events(calls: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(message_start and every block's start and input, every block's stop, the reply's end)."""
    calls_ = (ToolUse(f"t{i}", "bash", {"command": f"touch ran{i}"}) for i in range(calls))
    events = reply(*calls_, pings=False)["events"]
    stops = [e for e in events if e["type"] == "content_block_stop"]
    end = [e for e in events if e["type"] in ("message_delta", "message_stop")]
    body = [e for e in events if e not in stops and e not in end]
    return body, stops, end


def test_late_block_stops_like_llama_cpp_still_dispatch_each_call_as_the_next_begins(workspace):
    log: list[str] = []
    body, stops, end = _tool_events(3)

    def late_stops(request: RawRequest, connection: Connection) -> None:
        connection.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        data = sse_body(body)
        connection.send(b"%x\r\n%s\r\n" % (len(data), data))
        # The first two calls are complete (a later block started); the last one is not yet.
        log.append("ran0" if wait_until(lambda: (workspace / "ran0").exists(), 20) else "ran0 never")
        log.append("ran1" if wait_until(lambda: (workspace / "ran1").exists(), 20) else "ran1 never")
        log.append("ran2 early" if (workspace / "ran2").exists() else "ran2 waits")
        data = sse_body([*stops, *end])
        connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        log.append("sent stops")

    with RawServer(Script([late_stops, _ok("done")])) as server:
        done = _run("anthropic", server, workspace, "-p", "three calls")
    assert done.returncode == 0 and "done" in done.stdout, done.stderr
    assert log == ["ran0", "ran1", "ran2 waits", "sent stops"]
    assert all((workspace / f"ran{i}").exists() for i in range(3))
    _valid(server)
    results = [b for b in server.requests[1].body["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["t0", "t1", "t2"]


def test_a_well_framed_call_is_dispatched_at_its_block_stop_not_before(workspace):
    log: list[str] = []
    body, stops, end = _tool_events(1)

    def framed(request: RawRequest, connection: Connection) -> None:
        connection.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in (sse_body(body), sse_body(stops), sse_body(end)):
            if piece.startswith(b"event: content_block_stop"):
                time.sleep(0.5)  # its input is whole, but no block after it began: it must wait for the stop
                log.append("early" if (workspace / "ran0").exists() else "waited for the stop")
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            if piece.startswith(b"event: content_block_stop"):
                log.append("ran" if wait_until(lambda: (workspace / "ran0").exists(), 20) else "never ran")
        connection.send(b"0\r\n\r\n")

    with RawServer(Script([framed, _ok("done")])) as server:
        done = _run("anthropic", server, workspace, "-p", "one call")
    assert done.returncode == 0, done.stderr
    assert log == ["waited for the stop", "ran"]


# -- "context full", under each server's name -------------------------------------------------

CONTEXT_FULL = {
    "llama.cpp": (400, {"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 9000,
                                  "n_ctx": 4096, "message": "the request exceeds the available context size, try "
                                  "increasing it"}}),
    "vLLM": (400, {"object": "error", "type": "BadRequestError", "param": None, "code": 400,
                   "message": "This model's maximum context length is 4096 tokens. However, you requested 9000 "
                   "tokens (8000 in the messages, 1000 in the completion). Please reduce the length."}),
    "vLLM V1": (400, {"error": {"type": "BadRequestError", "code": 400, "message": "The decoder prompt (length 9000) "
                                "is longer than the maximum model length of 4096. Make sure that `max_model_len` is "
                                "no smaller than the number of text tokens."}}),
    "Ollama": (400, {"error": {"type": "invalid_request_error", "message": "the input length exceeds the context "
                               "length"}}),
    "Ollama (runner)": (500, {"error": {"type": "api_error", "message": "input exceeds context length"}}),
}


@pytest.mark.parametrize("provider", WIRES)
@pytest.mark.parametrize("server_name", list(CONTEXT_FULL))
def test_a_servers_own_context_full_answer_compacts_instead_of_failing(workspace, provider, server_name):
    status, error = CONTEXT_FULL[server_name]
    full = http(status, json.dumps(error).encode())
    long = reply(Text("a long answer " * 300), ToolUse("t1", "bash", {"command": "echo more"}))
    first = [reply_bytes(provider, long["events"]), _ok("first", provider)]
    with RawServer(Script(first)) as server:  # something to compact: a long reply before the last one
        assert _run(provider, server, workspace, "-p", "first").returncode == 0
    summary = reply_bytes(provider, reply(Text("<summary>the person said first</summary>"))["events"])
    with RawServer(Script([full, summary, _ok("fits now", provider)])) as server:
        done = _run(provider, server, workspace, "--continue", "-p", "second")
    assert done.returncode == 0 and "fits now" in done.stdout, done.stderr
    assert len(server.requests) == 3  # refused, the summary request, the same request again
    _valid(server)
