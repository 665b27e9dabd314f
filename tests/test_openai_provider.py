"""Choosing the OpenAI provider keeps every promise of the rest of the program: the client's one connection
and request timeout, the shape check, usage with the model's name, overflow recovery, the provider table."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from midstream.tools.cli.main import config_from_environment, parse_args
from midstream.tools.conversation.compaction import SUMMARY_QUESTION
from midstream.tools.conversation.history import history_problems
from midstream.tools.events import Compacted, RequestUsage, TurnRolledBack
from midstream.tools.registry import Access, ToolContext, ToolRegistry, Wording, tool
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
from midstream.tools.wire import model as model_module
from midstream.tools.wire.openai import OpenAIClient, chat_request

from tests.helpers import chat_agent

# -- the client: one connection, the watchdog, the encoded body ----------------------------


def test_one_connection_serves_a_whole_chat_turn(make_agent):
    server = ScriptedServer([reply(ToolUse(f"t{i}", "record", {"label": str(i)})) for i in range(5)]
                            + [reply(Text("done"))])
    with server:
        agent, _ = chat_agent(make_agent, server)
        assert agent.send("go").ok
    assert len(server.requests) == 6 and server.connections == 1
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}


def test_a_chat_answer_that_never_comes_ends_at_the_request_timeout(make_agent):
    server = ScriptedServer([{"events": reply(Text("x"))["events"], "stall_after": 3, "stall": 20},
                             reply(Text("second try"))])
    with server:
        agent, renderer = chat_agent(make_agent, server, request_timeout=0.5, idle_timeout=30)
        assert agent.send("go").ok
    assert "request time limit" in renderer.of(TurnRolledBack)[0].reason
    assert agent.history[-1]["content"] == [{"type": "text", "text": "second try"}]


def test_the_chat_body_is_the_translation_sent_with_its_length_and_follows_the_history():
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=b"data: [DONE]\n\n")

    client = OpenAIClient(base_url="http://model.test/v1", api_key="k", transport=httpx2.MockTransport(handler))
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "ünï \u2028"}]}]
    body = {"model": "m", "max_tokens": 10, "messages": messages, "system": "sys",
            "tools": [{"name": "t", "description": "d", "input_schema": {"type": "object"}}]}
    for turn in range(3):
        with client.stream(body) as events:
            assert [e["type"] for e in events][-1] == "message_stop"
        request = seen[-1]
        raw = request.read()
        assert request.url.path == "/v1/chat/completions" and request.headers["authorization"] == "Bearer k"
        assert int(request.headers["content-length"]) == len(raw)
        assert json.loads(raw) == chat_request(body)
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"c{turn}", "name": "t",
                                                           "input": {"n": turn}}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"c{turn}",
                                                      "content": "ok"}]})
    # A rewrite replaces a message's content (compaction, clearing, a merge): the next body follows it.
    messages[0] = {"role": "user", "content": "rewritten"}
    messages[2]["content"] = [*messages[2]["content"], {"type": "text", "text": "and a note"}]
    with client.stream(body) as events:
        list(events)
    sent = json.loads(seen[-1].read())
    assert sent == chat_request(body) and sent["messages"][1] == {"role": "user", "content": "rewritten"}
    assert sent["messages"][4] == {"role": "user", "content": "and a note"}
    client.close()


def test_translated_events_pass_the_shape_check_and_a_nameless_call_is_retried(make_agent):
    nameless = {"events": [
        {"type": "chat_chunk", "chunk": {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {
            "tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": "{}"}}]}}]}},
        {"type": "message_stop"}]}
    server = ScriptedServer([nameless, reply(Text("fine"))])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        assert agent.send("go").ok
    assert "without a name" in renderer.of(TurnRolledBack)[0].reason
    assert agent.history[-1]["content"] == [{"type": "text", "text": "fine"}]


# -- usage, with the model the server reported ------------------------------------------


def test_usage_names_the_model_the_chat_server_reported(make_agent):
    server = ScriptedServer([reply(Text("hi"))])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        assert agent.send("go").ok
    usage = renderer.of(RequestUsage)
    assert len(usage) == 1 and usage[0].model == "scripted"  # what the chunks said, not what was asked for


# -- one PromptTooLong, one recogniser, and the loop's recovery -------------------------


@pytest.mark.parametrize(("status", "error", "tokens", "limit"), [
    (400, {"type": "BadRequestError", "message": "This model's maximum context length is 4096 tokens. However, "
           "you requested 5000 tokens (4000 in the messages, 1000 in the completion)."}, 5000, 4096),
    (400, {"code": "context_length_exceeded", "message": "This model's maximum context length is 8192 tokens. "
           "However, your messages resulted in 9000 tokens."}, 9000, 8192),
    (400, {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 7000, "n_ctx": 4096,
           "message": "the request exceeds the available context size, try increasing it"}, 7000, 4096),
    (413, {"code": "context_length_exceeded", "message": "too long"}, None, None),
])
def test_every_server_s_overflow_is_the_one_prompt_too_long_with_its_numbers(status, error, tokens, limit):
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json={"error": error})

    client = OpenAIClient(base_url="http://model.test/v1", api_key="k", transport=httpx2.MockTransport(handler))
    with pytest.raises(model_module.PromptTooLong) as raised, client.stream({"model": "m", "messages": []}):
        pass
    assert type(raised.value) is model_module.PromptTooLong and raised.value.status == status
    assert (raised.value.tokens, raised.value.limit) == (tokens, limit)
    assert model_module.prompt_too_long(f"{error.get('code') or error.get('type')}: {error['message']}") is not None


@tool(wording=Wording("Fetching", "Fetched", target="page"), access=lambda ws, args: Access.reading("pages"))
def fetch(ctx: ToolContext, page: int) -> str:
    """Fetch one page of the test corpus."""
    return f"page {page}: " + "lorem ipsum dolor sit amet " * 60


def test_an_overflow_on_the_chat_wire_compacts_once_and_the_retry_succeeds(make_agent):
    calls = {"n": 0}
    summaries: list[str] = []

    def model(body: dict[str, Any]) -> dict[str, Any]:  # bodies arrive as Chat Completions requests
        last = body["messages"][-1]
        if last["role"] == "user" and (last.get("content") or "").startswith(SUMMARY_QUESTION):
            summaries.append("## Task\nFetch pages.\n## Next step\nGo on.")
            return reply(Text(summaries[-1]))
        calls["n"] += 1
        if calls["n"] >= 8:
            return reply(Text("all read"))
        return reply(ToolUse(f"call{calls['n']}", "fetch", {"page": calls["n"]}))

    server = ScriptedServer([], context_limit=2500, respond=model)
    with server:
        agent, renderer = chat_agent(make_agent, server, tools=ToolRegistry([fetch]), max_tokens=200)
        ended = agent.send("Read the pages.")
    assert ended.ok and summaries
    assert server.log.count("too_long") == 1
    assert renderer.of(Compacted)[0].reason == "overflow"
    assert agent.context_used().window == 2500  # learnt from the error's numbers
    assert history_problems(agent.history) == []


# -- --provider is one line of the table; the model follows the provider ----------------


def _config(argv: list[str]):
    return config_from_environment(parse_args(argv), need_service=False)


def test_the_model_and_its_variable_follow_the_provider(monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_MODEL", "claude-from-env")
    assert _config([]).model == "claude-from-env" and _config([]).provider == "anthropic"
    openai = _config(["--provider", "openai"])
    assert (openai.provider, openai.model, openai.base_url) == ("openai", "gpt-4.1", "https://api.openai.com/v1")
    assert not openai.prompt_cache
    monkeypatch.setenv("OPENAI_MODEL", "qwen2.5:3b")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    openai = _config(["--provider", "openai"])
    assert (openai.model, openai.base_url) == ("qwen2.5:3b", "http://127.0.0.1:8080/v1")
    assert _config(["--provider", "openai", "--model", "llama"]).model == "llama"
    settings = tmp_path / "home" / "midstream" / "settings.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text('provider = "openai"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(settings.parent.parent))
    assert _config([]).provider == "openai" and _config([]).model == "qwen2.5:3b"
    assert _config(["--provider", "anthropic"]).model == "claude-from-env"


def test_an_unknown_provider_is_one_line_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as raised:
        _config(["--provider", "gemini"])
    assert raised.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "anthropic, openai" in err
