"""The wire's edges: SSE framing at every boundary, event shapes, retry-after, one reused connection."""

from __future__ import annotations

import email.utils
import json
import time

import httpx2
import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
from midstream.tools.wire.assembler import TurnAssembler
from midstream.tools.wire.body import BodyEncoder
from midstream.tools.wire.errors import RetryableModelError, retry_after
from midstream.tools.wire.shapes import MalformedStream
from midstream.tools.wire.sse import iter_sse


def _events(data: bytes, size: int) -> list[tuple[str, bytes]]:
    return list(iter_sse(data[i : i + size] for i in range(0, len(data), size)))


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 1000])
def test_every_line_ending_at_every_chunk_boundary(ending, size):
    text = ": comment\n\nevent: a\ndata: {\"x\": 1}\n\n\n\nevent:b\ndata:two\ndata: lines\nid: 7\n\ndata: tail\n\n"
    got = _events(text.replace("\n", ending).encode(), size)
    assert got == [("a", b'{"x": 1}'), ("b", b"two\nlines"), ("message", b"tail")]


def test_a_torn_last_event_is_dropped_and_a_final_cr_still_ends_one():
    assert list(iter_sse([b"data: whole\r\r", b"data: torn"])) == [("message", b"whole")]
    assert list(iter_sse([b"data: a\r", b"\r"])) == [("message", b"a")]
    assert list(iter_sse([b"data: a\r\n", b"\r\n"])) == [("message", b"a")]


def test_a_long_line_in_many_chunks_is_joined_once():
    line = b"data: " + b"x" * 1_000_000 + b"\n\n"
    (event,) = _events(line, 4096)
    assert event == ("message", b"x" * 1_000_000)


def _feed(events: list[dict]) -> TurnAssembler:
    assembler = TurnAssembler()
    for event in events:
        assembler.feed(event)
    return assembler


START = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}


@pytest.mark.parametrize("events", [
    [{"type": "content_block_start", "index": 0, "content_block": None}],
    [START, {"type": "content_block_delta", "index": True, "delta": {"type": "text_delta", "text": "a"}}],
    [START, {"type": "content_block_delta", "index": -1, "delta": {"type": "text_delta", "text": "a"}}],
    [START, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}}],
    [START, {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}}],
    [START, {"type": "content_block_delta", "index": 0, "delta": "text"}],
    [START, {"type": "content_block_stop", "index": 0}, {"type": "content_block_stop", "index": 0}],
    [START, {"type": "content_block_stop", "index": 0}, START],
    [{"type": "content_block_stop", "index": 3}],
    [{"type": "message_start", "message": {"usage": [1]}}],
    [{"type": "message_delta", "delta": {"stop_reason": 7}}],
    [{"type": "message_delta", "delta": {}, "usage": "many"}],
    [{"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "", "name": "x"}}],
    [{"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": 3}}],
    [{"type": None}],
])
def test_each_malformed_event_is_a_retryable_error(events):
    with pytest.raises(MalformedStream) as caught:
        _feed(events)
    assert isinstance(caught.value, RetryableModelError)


def test_unknown_event_and_delta_types_are_not_malformed_and_accumulate():
    assembler = _feed([
        {"type": "something_new", "index": "whatever"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "widget", "parts": [], "label": None}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "widget_delta", "label": "a", "parts": ["x"]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "widget_delta", "label": "b", "parts": ["y"],
                                                              "extra": None}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"k":'}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": " 1}"}},
        {"type": "content_block_stop", "index": 0},
    ])
    assert assembler.message()["content"] == [
        {"type": "widget", "parts": ["x", "y"], "label": "ab", "extra": None, "input": {"k": 1}}]


def test_citations_on_a_block_that_started_with_none():
    assembler = _feed([
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "", "citations": None}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": {"n": 1}}},
        {"type": "content_block_stop", "index": 0},
    ])
    assert assembler.message()["content"][0]["citations"] == [{"n": 1}]


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": " 2.5 "}, 2.5),
    ({"retry-after": "soon"}, None),
    ({"retry-after": "nan"}, None),
    ({"retry-after": "-4"}, 0.0),
    ({"retry-after": "1e309"}, float("inf")),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
    ({"retry-after": "Mon, 99 Foo 2015 07:28:00 GMT"}, None),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after-ms": "x", "retry-after": "9"}, 9.0),
    ({}, None),
])
def test_retry_after_parsing(headers, seconds):
    assert retry_after(headers) == seconds


def test_retry_after_as_a_future_http_date():
    when = email.utils.formatdate(time.time() + 100, usegmt=True)
    assert 95 <= (retry_after({"retry-after": when}) or 0) <= 100


def test_the_incremental_body_is_the_same_json_and_follows_changes():
    encoder = BodyEncoder()
    messages = [{"role": "user", "content": [{"type": "text", "text": "ünï \u2028"}]}]
    body = {"model": "m", "messages": messages, "stream": True}
    assert json.loads(encoder.encode(body)) == body
    messages.append({"role": "assistant", "content": [{"type": "text", "text": "b"}]})
    assert json.loads(encoder.encode(body)) == body
    messages[-1]["content"] = [*messages[-1]["content"], {"type": "text", "text": "merged"}]
    assert json.loads(encoder.encode(body)) == body
    assert json.loads(encoder.encode({"messages": []})) == {"messages": []}


def test_one_connection_serves_a_whole_turn(make_agent):
    server = ScriptedServer([reply(ToolUse(f"t{i}", "record", {"label": str(i)})) for i in range(5)]
                            + [reply(Text("done"))])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("go").ok
    assert len(server.requests) == 6 and server.connections == 1


def test_an_answer_that_never_comes_ends_at_the_request_timeout(make_agent):
    server = ScriptedServer([{"events": [reply(Text("x"))["events"][0]], "stall_after": 1, "stall": 20},
                             reply(Text("second try"))])
    with server:
        agent, _ = make_agent(server, request_timeout=0.5, idle_timeout=30)
        assert agent.send("go").ok
    assert agent.history[-1]["content"] == [{"type": "text", "text": "second try"}]


def test_a_client_with_a_transport_still_reports_body_errors():
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
                               content=b"event: ping\ndata: {}\n\n")

    from midstream.tools.wire.providers import client_for

    client = client_for("anthropic", base_url="http://model.test", api_key="k", transport=httpx2.MockTransport(handler))
    with pytest.raises(RetryableModelError, match="cannot be decoded"), client.stream({"model": "m"}) as events:
        list(events)
    client.close()


def test_sealed_segments_follow_appends_merges_and_replacements():
    encoder = BodyEncoder()
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": f"{i} " * 40_000}]}
               for i in range(40)]  # ~3 MB: several sealed segments
    for step in range(8):
        body = {"model": "m", "messages": history}
        assert json.loads(b"".join(encoder.parts(body))) == body
        history.append({"role": "assistant" if len(history) % 2 else "user",
                        "content": [{"type": "text", "text": f"new {step}"}]})
        if step == 3:
            history[-1]["content"] = [*history[-1]["content"], {"type": "text", "text": "merged"}]
        if step == 5:
            history[2] = {"role": "user", "content": [{"type": "text", "text": "compacted"}]}
    assert len(encoder.parts({"messages": history})) > 3  # written in pieces, never joined
