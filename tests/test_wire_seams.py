"""The wire's seams in process: the provider table, the dialect each client holds, the shape checks,
whole characters and early dispatch in the assembler (the same behaviours through the real program
are in test_wire_faults.py)."""

from __future__ import annotations

import json

import httpx2
import pytest
from midstream.agent import AgentConfig
from midstream.tools.events import ToolCallReady
from midstream.tools.testing.scripted_server import Text, ToolUse, reply
from midstream.tools.wire.assembler import TurnAssembler, whole_characters
from midstream.tools.wire.chat_shapes import check_chunk
from midstream.tools.wire.client import Timeouts
from midstream.tools.wire.errors import FatalModelError, PromptTooLong, prompt_too_long
from midstream.tools.wire.providers import PROVIDERS, client_for
from midstream.tools.wire.shapes import MalformedStream

from tests.helpers import CHAT_SHAPES


def _seen(provider: str, **settings) -> httpx2.Request:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(401, json={"error": {"type": "authentication_error", "message": "no"}})

    client = client_for(provider, transport=httpx2.MockTransport(handler), **settings)
    with pytest.raises(FatalModelError) as refused, client.stream({"model": "m", "messages": []}):
        pass
    client.close()
    assert PROVIDERS[provider].key_env in str(refused.value)  # the hint names the row's variable
    return seen[0]


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_each_provider_row_decides_its_path_key_header_and_default_url(name):
    row = PROVIDERS[name]
    request = _seen(name, api_key="sk-test")
    assert str(request.url).startswith(row.base_url)
    expected = "Bearer sk-test" if row.key_header == "authorization" else "sk-test"
    assert request.headers[row.key_header] == expected
    assert request.url.path.endswith("/chat/completions" if row.wire == "chat" else "/v1/messages")


def test_the_configuration_defaults_come_from_the_table():
    assert AgentConfig().model == PROVIDERS["anthropic"].model
    assert AgentConfig().base_url == PROVIDERS["anthropic"].base_url
    assert PROVIDERS["anthropic"].prompt_cache and not PROVIDERS["openai"].prompt_cache


def test_timeouts_travel_as_one_value():
    assert Timeouts() == Timeouts(connect=10.0, idle=90.0, request=600.0, write=30.0)


@pytest.mark.parametrize("shape", list(CHAT_SHAPES))
def test_every_malformed_chat_shape_is_refused_by_the_one_check(shape):
    with pytest.raises(MalformedStream):
        check_chunk(CHAT_SHAPES[shape])


def test_well_formed_chat_chunks_pass_the_check():
    for chunk in ({"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
                  {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
                      {"index": 0, "id": "a", "type": "function", "function": {"name": "bash", "arguments": "{"}}]}}]},
                  {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                                                       "prompt_tokens_details": {"cached_tokens": 0}}},
                  {"error": {"message": "overloaded"}}):
        check_chunk(chunk)


@pytest.mark.parametrize("text", ["a😀b", "😀😀", "x" * 5 + "🎉"])
def test_surrogate_halves_join_at_every_split(text):
    units = [text.encode("utf-16-le")[i:i + 2].decode("utf-16-le", "surrogatepass")
             for i in range(0, len(text.encode("utf-16-le")), 2)]
    for cut in range(1, len(units)):
        assembler = TurnAssembler()
        events = reply(Text("x"))["events"]
        shown = []
        for event in events[:3]:
            assembler.feed(event)
        for piece in ("".join(units[:cut]), "".join(units[cut:])):
            shown += [e.text for e in assembler.feed({"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "text_delta", "text": piece}})]
        for event in events[4:]:
            assembler.feed(event)
        assert "".join(shown) == text and assembler.message()["content"][0]["text"] == text
        json.dumps(assembler.message(), ensure_ascii=False).encode("utf-8")  # encodable: no lone half


def test_a_lone_surrogate_is_replaced_in_text_and_in_tool_input():
    assert whole_characters("a\udc00b\ud83d") == "a\ufffdb\ufffd"
    events = reply(ToolUse("t1", "write_file", {"path": "a", "content": "x"}))["events"]
    assembler = TurnAssembler()
    events = [e for e in events if e["type"] != "content_block_delta"]
    stop = next(i for i, e in enumerate(events) if e["type"] == "content_block_stop")
    events.insert(stop, {"type": "content_block_delta", "index": 0, "delta": {
        "type": "input_json_delta", "partial_json": '{"path": "a", "content": "lone \\ud83d half"}'}})
    for event in events:
        assembler.feed(event)
    assert assembler.message()["content"][0]["input"]["content"] == "lone \ufffd half"


def _late_stops(calls: int) -> list[dict]:
    events = reply(*(ToolUse(f"t{i}", "bash", {"command": f"echo {i}"}) for i in range(calls)), pings=False)["events"]
    stops = [e for e in events if e["type"] == "content_block_stop"]
    rest = [e for e in events if e["type"] != "content_block_stop"]
    return rest[:-2] + stops + rest[-2:]


def test_a_call_is_ready_when_a_later_block_starts_and_its_late_stop_is_passed_over():
    assembler = TurnAssembler()
    ready_at = {}
    for number, event in enumerate(_late_stops(3)):
        for update in assembler.feed(event):
            if isinstance(update, ToolCallReady):
                ready_at[update.id] = (number, event["type"])
    assert ready_at["t0"][1] == ready_at["t1"][1] == "content_block_start"  # of the next call
    assert ready_at["t2"][1] == "content_block_stop"  # the last one has nothing after it
    assert [b["id"] for b in assembler.message()["content"]] == ["t0", "t1", "t2"]
    assert assembler.complete


def test_input_after_an_early_dispatch_is_a_malformed_stream():
    events = _late_stops(2)
    start_1 = next(i for i, e in enumerate(events) if e["type"] == "content_block_start" and e["index"] == 1)
    events.insert(start_1 + 1, {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "input_json_delta", "partial_json": ', "more": 1'}})
    assembler = TurnAssembler()
    with pytest.raises(MalformedStream):
        for event in events:
            assembler.feed(event)


def test_an_input_that_does_not_parse_yet_waits_for_its_stop():
    assembler = TurnAssembler()
    events = reply(ToolUse("t0", "bash", {"command": "x"}), ToolUse("t1", "bash", {"command": "y"}))["events"]
    ready = []
    for event in events:
        if event["type"] == "content_block_delta" and event["index"] == 0:
            event = {**event, "delta": {"type": "input_json_delta", "partial_json": '{"command": "x"'}}  # no "}"
        ready += [u for u in assembler.feed(event) if isinstance(u, ToolCallReady)]
    assert [r.id for r in ready] == ["t0", "t1"] and ready[0].error  # decided at its own stop, as before


@pytest.mark.parametrize("text", [
    "the request exceeds the available context size, try increasing it",
    "This model's maximum context length is 4096 tokens. However, your request has 5000 input tokens.",
    "The decoder prompt (length 5000) is longer than the maximum model length of 4096.",
    "input exceeds context length", "the input length exceeds the context length",
])
def test_servers_names_for_context_full_are_recognised(text):
    assert isinstance(prompt_too_long(text), PromptTooLong)


def test_numbers_in_vllm_answers_are_read():
    found = prompt_too_long("The decoder prompt (length 5000) is longer than the maximum model length of 4096.")
    assert found is not None and (found.tokens, found.limit) == (5000, 4096)
