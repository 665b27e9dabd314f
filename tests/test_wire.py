"""The model boundary: SSE bytes at awkward chunk boundaries, and HTTP errors mapped once."""

from __future__ import annotations

import functools
import json
import time

import pytest
from midstream.tools.events import TurnRolledBack
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
from midstream.tools.wire.model import FatalModelError, ModelClient, RetryableModelError

from tests.helpers import assemble_over

_assemble_over = functools.partial(assemble_over, ModelClient)


def _sse_bytes(scripted: dict) -> bytes:
    return b"".join(
        f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in scripted["events"]
    )


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_sse_split_at_every_byte_boundary_assembles_the_same_message(size):
    tricky = {"path": "src/ünïcode/😀.py", "text": 'line "one"\r\nline\ttwo \\ end', "crlf": "a\r\nb"}
    scripted = reply(Text("héllo wörld 😀\n"), ToolUse("t1", "edit", tricky, chunk=5))
    data = _sse_bytes(scripted).replace(b"\n", b"\r\n")  # CRLF line endings are legal SSE too
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assembler = _assemble_over(chunks)
    assert assembler.complete
    assert assembler.message()["content"] == [
        {"type": "text", "text": "héllo wörld 😀\n"},
        {"type": "tool_use", "id": "t1", "name": "edit", "input": tricky},
    ]


def test_http_529_with_retry_after_is_retried_no_sooner(make_agent):
    server = ScriptedServer([
        {"status": 529, "headers": {"retry-after": "1"}, "error": {"type": "overloaded_error", "message": "busy"}},
        reply(Text("hello")),
    ])
    with server:
        agent, renderer = make_agent(server)
        assert agent.send("hi").ok
    first, second = server.requests
    assert second["time"] - first["time"] >= 1.0
    rolled = renderer.of(TurnRolledBack)
    assert len(rolled) == 1 and "529" in rolled[0].reason and rolled[0].retry_in >= 1.0


def test_http_401_is_not_retried_and_says_what_to_do(make_agent):
    server = ScriptedServer([{"status": 401, "error": {"type": "authentication_error", "message": "bad key"}}])
    with server:
        agent, _ = make_agent(server)
        ended = agent.send("hi")
    assert not ended.ok and "ANTHROPIC_API_KEY" in ended.message
    assert len(server.requests) == 1
    assert agent.history == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


@pytest.mark.parametrize("fault", [
    {"drop_after": 0}, {"drop_after": 4}, {"end_after": 5},
])
def test_a_reply_that_breaks_off_is_rolled_back_and_retried(make_agent, fault):
    broken = reply(Text("partial text that will be discarded", chunk=4)) | fault
    server = ScriptedServer([broken, reply(Text("complete"))])
    with server:
        agent, renderer = make_agent(server)
        assert agent.send("hi").ok
    assert server.requests[0]["body"]["messages"] == server.requests[1]["body"]["messages"]
    assert agent.history[-1]["content"] == [{"type": "text", "text": "complete"}]
    assert len(renderer.of(TurnRolledBack)) == 1


def test_error_event_overloaded_then_success(make_agent):
    failing = reply(Text("abc"))
    failing["events"].insert(3, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    server = ScriptedServer([failing, reply(Text("fine"))])
    with server:
        agent, renderer = make_agent(server)
        assert agent.send("hi").ok
    assert "overloaded_error" in renderer.of(TurnRolledBack)[0].reason


def test_idle_timeout_fires_on_a_stall_and_the_retry_succeeds(make_agent):
    server = ScriptedServer([reply(Text("stalls")) | {"stall_after": 3, "stall": 3.0}, reply(Text("fresh"))])
    with server:
        agent, renderer = make_agent(server, idle_timeout=0.5)
        started = time.monotonic()
        assert agent.send("hi").ok
        assert time.monotonic() - started < 3.0  # the stall did not have to end by itself
    assert "no data" in renderer.of(TurnRolledBack)[0].reason


def test_attempts_exhausted_leave_history_at_the_user_message(make_agent):
    server = ScriptedServer([{"status": 503, "error": {"type": "api_error", "message": "down"}}] * 3)
    with server:
        agent, renderer = make_agent(server, max_attempts=3)
        ended = agent.send("hi")
    assert not ended.ok and "503" in ended.message
    assert len(server.requests) == 3
    assert agent.history == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert [r.retry_in is None for r in renderer.of(TurnRolledBack)] == [False, False, True]


def test_error_classes_for_statuses():
    for status, kind in [(400, FatalModelError), (404, FatalModelError), (413, FatalModelError),
                         (429, RetryableModelError), (500, RetryableModelError), (529, RetryableModelError)]:
        server = ScriptedServer([{"status": status, "error": {"type": "x", "message": "m"}}])
        with server:
            client = ModelClient(base_url=server.url, api_key="k")
            with pytest.raises(kind), client.stream({}) as events:
                list(events)
            client.close()
