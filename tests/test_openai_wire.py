"""The Chat Completions wire against the scripted server speaking it on loopback: the same
mid-stream dispatch, history translated per request, the same rollback and retry rules."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import threading

import httpx2
import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.conversation.transcript import Transcript
from midstream.tools.events import ThinkingDelta, ToolCallReady, TurnCommitted, TurnRolledBack
from midstream.tools.testing.scripted_chat import render_chat
from midstream.tools.testing.scripted_server import ScriptedServer, Text, Thinking, ToolUse, reply
from midstream.tools.wire.assembler import TurnAssembler
from midstream.tools.wire.model import FatalModelError, ModelClient, PromptTooLong, RetryableModelError
from midstream.tools.wire.openai import ChunkTranslator, OpenAIClient, chat_request

from tests.helpers import assemble_over, chat_agent, program_env, wait_until

_assemble_over = functools.partial(assemble_over, OpenAIClient, base_url="http://model.test/v1")


def _event(scripted: dict, kind: str, index: int | None = None) -> dict:
    return next(e for e in scripted["events"] if e["type"] == kind and (index is None or e.get("index") == index))


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"type": "chat_chunk", "chunk": {"id": "c", "choices": [{"index": 0, "delta": delta,
                                                                    "finish_reason": finish}]}}


# -- dispatch --------------------------------------------------------------------------------------

def test_two_parallel_calls_start_before_finish_reason_the_first_when_the_second_begins(make_agent):
    first = reply(ToolUse("t1", "record", {"label": "A"}, chunk=4), ToolUse("t2", "record", {"label": "B"}, chunk=4))
    server = ScriptedServer([first, reply(Text("done"))])
    # B's arguments wait (up to 5 s) for A to start, and [DONE] for B, the last call, which is complete
    # at finish_reason: a client that dispatches later never starts them in time, and the log shows it.
    second_arguments = [e for e in first["events"] if e["type"] == "content_block_delta" and e["index"] == 1]
    second_arguments[0]["_before"] = lambda: wait_until(lambda: "start:A" in server.log)
    _event(first, "message_stop")["_before"] = lambda: wait_until(lambda: "start:B" in server.log)
    with server:
        agent, _ = chat_agent(make_agent, server)
        assert agent.send("go").ok
    log = server.log
    assert log.index("sent:tool_call_start:1") < log.index("start:A") < log.index("sent:tool_call_arguments:1")
    assert log.index("sent:finish_reason:tool_calls") < log.index("start:B") < log.index("sent:[DONE]")
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_a_call_is_dispatched_when_text_resumes_after_it(make_agent):
    first = reply(ToolUse("t1", "record", {"label": "A"}), Text("still streaming after the call", chunk=4))
    server = ScriptedServer([first, reply(Text("done"))])
    text_deltas = [e for e in first["events"] if e["type"] == "content_block_delta" and e["index"] == 1]
    text_deltas[1]["_before"] = lambda: wait_until(lambda: "start:A" in server.log)
    with server:
        agent, _ = chat_agent(make_agent, server)
        assert agent.send("go").ok
    log = server.log
    first_text = log.index("sent:content")
    assert log.index("sent:tool_call_arguments:0") < first_text < log.index("start:A")
    assert log.index("start:A") < log.index("sent:finish_reason:tool_calls")


def test_a_whole_call_in_one_piece_is_dispatched_at_finish_reason(make_agent):
    # Ollama's shape: each call whole in one chunk, no index, finish_reason "stop" even after tool calls.
    calls = [{"id": "call_a", "type": "function", "function": {"name": "record", "arguments": {"label": "A"}}},
             {"id": "call_b", "type": "function", "function": {"name": "record", "arguments": '{"label": "B"}'}}]
    scripted = {"events": [
        _chunk({"role": "assistant", "content": ""}), _chunk({"tool_calls": calls}),
        _chunk({}, finish="stop"),
        {"type": "message_stop", "_before": lambda: wait_until(lambda: "start:B" in server.log)},
    ]}
    server = ScriptedServer([scripted, reply(Text("done"))])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        assert agent.send("go").ok
    assert [(c.id, c.input) for c in renderer.of(ToolCallReady)] == [("call_a", {"label": "A"}),
                                                                      ("call_b", {"label": "B"})]
    assert server.log.index("start:B") < server.log.index("sent:[DONE]")
    assert [m["role"] for m in server.requests[1]["body"]["messages"]][-3:] == ["assistant", "tool", "tool"]


def test_interleaved_arguments_are_a_malformed_reply_not_a_wrong_call(make_agent):
    start = {"type": "function", "function": {"name": "record", "arguments": ""}}
    scripted = {"events": [
        _chunk({"tool_calls": [{"index": 0, "id": "a", **start}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "b", **start}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"label": "A"}'}}]}),
        _chunk({}, finish="tool_calls"), {"type": "message_stop"},
    ]}
    server = ScriptedServer([scripted, reply(Text("ok"))])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        assert agent.send("go").ok
    assert "interleaved" in renderer.of(TurnRolledBack)[0].reason
    assert "start:A" not in server.log


# -- requests --------------------------------------------------------------------------------------

def test_the_request_after_a_tool_turn_carries_tool_calls_and_one_tool_message_per_call(make_agent):
    server = ScriptedServer([
        reply(Thinking("private reasoning"), Text("Reading both."), ToolUse("call_1", "record", {"label": "A"}),
              ToolUse("call_2", "record", {"label": "B", "reads": "ü.txt"})),
        reply(Text("done")),
    ])
    with server:
        agent, renderer = chat_agent(make_agent, server, max_tokens=1234)
        assert agent.send("go").ok
    body = server.requests[1]["body"]
    assert body["model"] == "qwen2.5:3b" and body["max_tokens"] == 1234
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    system, user, assistant, tool_a, tool_b = body["messages"]
    assert system == {"role": "system", "content": "You are a test."}
    assert user == {"role": "user", "content": "go"}
    assert assistant["role"] == "assistant" and assistant["content"] == "Reading both."
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in assistant["tool_calls"]] == [("call_1", "record", {"label": "A"}),
                                                  ("call_2", "record", {"label": "B", "reads": "ü.txt"})]
    assert tool_a == {"role": "tool", "tool_call_id": "call_1", "content": "recorded A"}
    assert tool_b == {"role": "tool", "tool_call_id": "call_2", "content": "recorded B"}
    assert "private reasoning" not in json.dumps(body)  # reasoning is shown, never sent back
    assert "private reasoning" in "".join(e.text for e in renderer.of(ThinkingDelta))
    record = next(t for t in body["tools"] if t["function"]["name"] == "record")
    assert record["type"] == "function" and record["function"]["parameters"]["required"] == ["label"]
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-test"
    assert "x-api-key" not in server.requests[0]["headers"]
    # History itself stays in the Messages API's shape.
    assert [b["type"] for b in agent.history[1]["content"]] == ["thinking", "text", "tool_use", "tool_use"]


def test_bad_calls_become_error_results_the_model_can_act_on(make_agent):
    server = ScriptedServer([
        reply(ToolUse("t1", "record", raw_json='{"label": "A"'), ToolUse("t2", "no_such_tool", {"x": 1}),
              ToolUse("t3", "record", {"label": "ok"})),
        reply(Text("recovered")),
    ])
    with server:
        agent, _ = chat_agent(make_agent, server)
        assert agent.send("go").ok
    bad, unknown, good = server.requests[1]["body"]["messages"][-3:]
    assert bad["role"] == "tool" and bad["tool_call_id"] == "t1"
    assert bad["content"].startswith("Error: ") and "not valid JSON" in bad["content"]
    assert unknown["tool_call_id"] == "t2" and "Unknown tool 'no_such_tool'" in unknown["content"]
    assert "record" in unknown["content"] and good["content"] == "recorded ok"
    assert "start:A" not in server.log and server.log.count("start:ok") == 1


def test_translation_of_interrupted_turns_and_cache_markers():
    body = {"model": "m", "max_tokens": 9, "system": [{"type": "text", "text": "sys", "cache_control": {}}],
            "tools": [], "messages": [
                {"role": "user", "content": [{"type": "text", "text": "do it", "cache_control": {"type": "x"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "bash", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "text", "text": "stopped"}],
                     "is_error": True},
                    {"type": "text", "text": "[interrupted]"}, {"type": "text", "text": "now this"}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]},
            ]}
    request = chat_request(body, max_tokens_field="max_completion_tokens")
    assert request["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "do it"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "Error: stopped"},
        {"role": "user", "content": "[interrupted]\n\nnow this"},
    ]
    assert request["max_completion_tokens"] == 9 and "tools" not in request and "cache_control" not in str(request)


# -- faults ----------------------------------------------------------------------------------------

def _count_then(scripted_first: dict) -> list[dict]:
    """A reply whose bash call appends to count.txt, broken by the test; then the retry's same call."""
    return [scripted_first, reply(ToolUse("t9", "bash", {"command": "echo ran >> count.txt"})), reply(Text("ok"))]


def _index(scripted: dict, kind: str) -> int:
    return next(i for i, e in enumerate(scripted["events"]) if e["type"] == kind)


@pytest.mark.parametrize("fault", ["drop mid-arguments", "missing [DONE]", "in-stream error", "429", "500"])
def test_faults_roll_back_retry_and_run_nothing_twice(make_agent, workspace, fault):
    command = ToolUse("t1", "bash", {"command": "echo ran >> count.txt"}, chunk=6)
    broken = reply(command, Text("after the command"))
    events = broken["events"]
    args_at = next(i for i, e in enumerate(events) if e["type"] == "content_block_delta")
    match fault:
        case "drop mid-arguments":
            broken["drop_after"] = args_at + 2
        case "missing [DONE]":
            broken["end_after"] = _index(broken, "message_stop")
        case "in-stream error":
            events.insert(_index(broken, "message_delta"), {"type": "error", "error": {
                "type": "server_error", "message": "the engine died"}})
        case "429":
            broken = {"status": 429, "headers": {"retry-after": "1"},
                      "error": {"type": "requests", "code": "rate_limit_exceeded", "message": "slow down"}}
        case "500":
            broken = {"status": 500, "error": {"type": "server_error", "message": "oops"}}
    server = ScriptedServer(_count_then(broken))
    with server:
        agent, renderer = chat_agent(make_agent, server, isolation="none")
        assert agent.send("count").ok
    assert (workspace / "count.txt").read_text() == "ran\n"  # ran once, whichever attempt ran it
    (rolled,) = renderer.of(TurnRolledBack)
    assert server.requests[0]["body"]["messages"] == server.requests[1]["body"]["messages"]
    if fault == "429":
        assert "429" in rolled.reason and rolled.retry_in >= 1.0
        assert server.requests[1]["time"] - server.requests[0]["time"] >= 1.0
    if fault == "in-stream error":
        assert "the engine died" in rolled.reason
    if fault == "drop mid-arguments":
        assert rolled.commands == ()  # the call never started
    if fault == "missing [DONE]":
        assert rolled.commands == ("echo ran >> count.txt",)
        assert [r["tool_call_id"] for r in server.requests[2]["body"]["messages"] if r["role"] == "tool"] == ["t9"]


def test_an_in_stream_error_names_its_kind_once(make_agent):
    scripted = reply(Text("x"))
    scripted["events"].insert(2, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad input"}})
    server = ScriptedServer([scripted])
    with server:
        agent, _ = chat_agent(make_agent, server)
        result = agent.send("go")
    assert not result.ok and "stream error invalid_request_error: bad input" in result.message


def test_context_length_exceeded_is_prompt_too_long_and_not_retried(make_agent):
    server = ScriptedServer([{"status": 400, "error": {
        "type": "invalid_request_error", "code": "context_length_exceeded",
        "message": "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens."}}])
    with server:
        agent, _ = chat_agent(make_agent, server)
        ended = agent.send("hi")
    assert not ended.ok and "maximum context length" in ended.message and len(server.requests) == 1


@pytest.mark.parametrize(("status", "error", "kind"), [
    (400, {"code": "context_length_exceeded", "message": "too long"}, PromptTooLong),
    (400, {"type": "exceed_context_size_error", "message": "the request exceeds the available context size"},
     PromptTooLong),
    (400, {"type": "BadRequestError", "message": "This model's maximum context length is 4096 tokens"}, PromptTooLong),
    (401, {"type": "invalid_request_error", "message": "bad key"}, FatalModelError),
    (429, {"type": "insufficient_quota", "code": "insufficient_quota", "message": "no money"}, FatalModelError),
    (429, {"type": "requests", "message": "slow down"}, RetryableModelError),
    (503, {"message": "Loading model", "type": "unavailable_error"}, RetryableModelError),
])
def test_status_errors_map_to_our_classes(status, error, kind):
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json={"error": error})

    client = OpenAIClient(base_url="http://model.test/v1", api_key="k", transport=httpx2.MockTransport(handler))
    with pytest.raises(kind) as raised, client.stream({"model": "m", "messages": []}):
        pass
    assert type(raised.value) is kind
    if status == 401:
        assert "OPENAI_API_KEY" in str(raised.value)


def test_context_overflow_inside_the_stream_is_prompt_too_long():
    wire = render_chat(reply(Text("x"))["events"][:2]) + b'data: {"error": {"code": 400, "type": ' \
        b'"exceed_context_size_error", "message": "the request exceeds the available context size"}}\n\n'
    with pytest.raises(PromptTooLong):
        _assemble_over([wire])


# -- awkward boundaries, usage, stop reasons -----------------------------------------------------------

TRICKY = {"path": 'quote " back\\slash \n newline', "emoji": "héllo 😀 世界", "n": [1, 2.5, None, True]}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_bytes_split_anywhere_assemble_the_same(size):
    wire = render_chat(reply(Text("héllo wörld 😀\n"), ToolUse("t1", "edit", TRICKY, chunk=5))["events"])
    wire = wire.replace(b"\n", b"\r\n")  # CRLF line endings are legal SSE too
    assembler = _assemble_over([wire[i : i + size] for i in range(0, len(wire), size)])
    assert assembler.complete and assembler.stop_reason == "tool_use"
    assert assembler.message()["content"] == [
        {"type": "text", "text": "héllo wörld 😀\n"}, {"type": "tool_use", "id": "t1", "name": "edit", "input": TRICKY},
    ]


def test_arguments_split_mid_escape_and_one_character_per_chunk_assemble_the_same(make_agent):
    raw = json.dumps(TRICKY)  # ASCII escapes: \" \\ \n \u00e9 \ud83d\ude00 …
    mid_escape = raw.index("\\ud83d") + 3
    pieces = {
        "one char per chunk": list(raw),
        "mid escape": [raw[:mid_escape], raw[mid_escape:]],
        "mid surrogate pair": [raw[: raw.index("\\ude00")], raw[raw.index("\\ude00") :]],
        "unescaped utf-8": list(json.dumps(TRICKY, ensure_ascii=False)),
    }
    replies = [reply(ToolUse(f"t{i}", "record_any", deltas=p)) for i, p in enumerate(pieces.values())]
    server = ScriptedServer([*replies, reply(Text("ok"))])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        agent.send("go")
    assert [e.input for e in renderer.of(ToolCallReady)] == [TRICKY] * 4


def test_usage_from_the_final_chunk_with_cached_tokens_as_cache_reads(make_agent):
    scripted = reply(Text("hi"), usage={"input_tokens": 30, "output_tokens": 7})
    scripted["events"][0]["message"]["usage"]["cache_read_input_tokens"] = 1000
    server = ScriptedServer([scripted])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        assert agent.send("hi").ok
    (committed,) = renderer.of(TurnCommitted)
    assert committed.usage == {"input_tokens": 30, "output_tokens": 7, "cache_read_input_tokens": 1000}


@pytest.mark.parametrize(("finish", "ok", "stop"), [
    ("length", False, "max_tokens"), ("content_filter", False, "refusal"), ("stop", True, "end_turn"),
])
def test_finish_reasons_map_to_stop_reasons(make_agent, finish, ok, stop):
    scripted = {"events": [_chunk({"content": "some text"}), _chunk({}, finish=finish), {"type": "message_stop"}]}
    server = ScriptedServer([scripted])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        ended = agent.send("hi")
    assert ended.ok is ok and renderer.of(TurnCommitted)[0].stop_reason == stop


def test_a_call_cut_off_by_length_never_runs(make_agent):
    cut_off = ToolUse("t1", "record", raw_json='{"label": "hal', stop=False)
    cut = reply(Text("writing"), cut_off, stop_reason="max_tokens")
    server = ScriptedServer([cut, reply(Text("ok"))])
    with server:
        agent, _ = chat_agent(make_agent, server)
        agent.send("go")
    assert "start:hal" not in server.log and len(server.requests) == 1
    assert [b["type"] for b in agent.history[-1]["content"]] == ["text"]  # no call left owing a result


# -- the command line ----------------------------------------------------------------------------------

def _midstream(args: list[str], cwd, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midstream", "--provider", "openai", *args], cwd=cwd,
                          env=program_env(**env), capture_output=True, text=True, timeout=60)


@pytest.mark.process
def test_missing_openai_key_with_the_default_base_url_is_one_clear_line(workspace):
    for env in ({}, {"OPENAI_BASE_URL": "https://api.openai.com/v1/"}):
        done = _midstream(["-p", "x"], workspace, env)
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0 and "OPENAI_API_KEY" in done.stderr


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.process
def test_a_key_an_http_header_cannot_carry_is_one_line_that_does_not_show_it(workspace, provider):
    """A key with a newline was retried five times, printing it in each line; a non-ASCII one
    (pasted with a typographic ellipsis) was a traceback."""
    variable = f"{provider.upper()}_API_KEY"
    base = {"OPENAI_BASE_URL": "/v1", "ANTHROPIC_BASE_URL": ""}[f"{provider.upper()}_BASE_URL"]
    server = ScriptedServer([reply(Text("ok"))])
    with server:
        url = {f"{provider.upper()}_BASE_URL": server.url + base}
        for bad in ("sk-se\ncret", "sk-secret…", "sk secret"):
            done = subprocess.run([sys.executable, "-m", "midstream", "--provider", provider, "-p", "x"], cwd=workspace,
                                  env=program_env(**url, **{variable: bad}), capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 2 and done.stdout == "", done.stderr
            (line,) = done.stderr.splitlines()
            assert line.startswith("midstream: ") and variable in line and "secret" not in line
        assert server.requests == []
        done = subprocess.run([sys.executable, "-m", "midstream", "--provider", provider, "-p", "x"], cwd=workspace,
                              env=program_env(**url, **{variable: " sk-secret\n"}), capture_output=True, text=True,
                              timeout=60)  # a key read from a file keeps its newline: that is not part of it
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    (sent,) = server.requests
    assert sent["headers"].get("authorization") == "Bearer sk-secret" or sent["headers"].get("x-api-key") == "sk-secret"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.process
def test_a_base_url_that_is_no_http_url_is_one_line_at_start(workspace, provider):
    """Without its scheme ('localhost:11434/v1') it was retried five times as 'unsupported protocol
    localhost://'; an unparseable one ('http://[::1/v1') was a traceback."""
    variable = f"{provider.upper()}_BASE_URL"
    for bad in ("localhost:11434/v1", "ftp://example.com/v1", "http://[::1/v1", "http://127.0.0.1:99999/v1", "http://"):
        done = subprocess.run([sys.executable, "-m", "midstream", "--provider", provider, "-p", "x"], cwd=workspace,
                              env=program_env(**{variable: bad}), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("midstream: ") and variable in line and "http://" in line


@pytest.mark.process
def test_print_mode_against_a_local_server_without_a_key(workspace):
    (workspace / "notes.txt").write_text("the answer is 42\n")
    server = ScriptedServer([
        reply(Text("Let me look.\n"), ToolUse("call_1", "read_file", {"path": "notes.txt"})),
        reply(Text("The answer is 42.")),
    ])
    with server:
        done = _midstream(["-p", "what is the answer?"], workspace,
                          {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_MODEL": "qwen2.5:3b"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The answer is 42.\n" and "✓ Read notes.txt (1 line)" in done.stderr
    first, second = server.requests
    assert first["path"] == second["path"] == "/v1/chat/completions"
    assert "authorization" not in first["headers"] and first["body"]["model"] == "qwen2.5:3b"
    assert "cache_control" not in json.dumps(first["body"])
    assert second["body"]["messages"][-1] == {"role": "tool", "tool_call_id": "call_1",
                                              "content": "     1\tthe answer is 42"}


@pytest.mark.process
def test_a_chat_completions_recording_replays_to_the_same_transcript(tmp_path):
    live, replayed = tmp_path / "live", tmp_path / "replayed"
    for where in (live, replayed):
        where.mkdir()
        (where / "notes.txt").write_text("alpha\n")
    broken = reply(ToolUse("t1", "edit_file", {"path": "notes.txt", "old_string": "alpha", "new_string": "beta"},
                           chunk=5))
    broken["drop_after"] = 4  # mid-arguments
    server = ScriptedServer([
        broken,
        reply(ToolUse("t2", "edit_file", {"path": "notes.txt", "old_string": "alpha", "new_string": "beta"})),
        reply(Text("Changed alpha to beta.")),
    ])
    recording = tmp_path / "recording"
    with server:
        first = _midstream(["-p", "change it", "--record", str(recording)], live,
                           {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": "sk-secret"})
    assert first.returncode == 0, first.stderr
    assert "sk-secret" not in "".join(p.read_text() for p in recording.iterdir())
    assert "tool_calls" in (recording / "0003.request.json").read_text()  # the wire's own request is kept
    again = _midstream(["-p", "change it", "--replay", str(recording), "--mode", "auto"], replayed, {})
    assert again.returncode == 0, again.stderr
    assert "rolled back" in again.stderr and again.stdout == first.stdout == "Changed alpha to beta.\n"
    assert (replayed / "notes.txt").read_text() == (live / "notes.txt").read_text() == "beta\n"
    assert Transcript.load(Transcript.find(replayed)) == Transcript.load(Transcript.find(live))


@pytest.mark.process
def test_a_recording_replayed_on_the_other_wire_is_one_clear_line(tmp_path):
    """A Chat Completions recording read as Messages SSE was 'malformed event [DONE]', then the retries
    consumed the following responses and gave up after seconds with 'the recording has no response 5'."""
    (tmp_path / "notes.txt").write_text("alpha\n")
    server = ScriptedServer([reply(Text("ok"))])
    recording = tmp_path / "recording"
    with server:
        first = _midstream(["-p", "hi", "--record", str(recording)], tmp_path, {"OPENAI_BASE_URL": server.url + "/v1"})
    assert first.returncode == 0, first.stderr
    again = subprocess.run([sys.executable, "-m", "midstream", "-p", "hi", "--replay", str(recording)], cwd=tmp_path,
                           env=program_env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and again.stdout == ""
    (line,) = again.stderr.splitlines()
    assert line.startswith("midstream: ") and "--provider openai" in line


@pytest.mark.process
def test_a_replay_that_outruns_its_recording_ends_at_once(tmp_path):
    """'the recording has no response 2' was a connection error: retried four times, seconds apart."""
    (tmp_path / "notes.txt").write_text("alpha\n")
    server = ScriptedServer([reply(ToolUse("t1", "read_file", {"path": "notes.txt"})), reply(Text("ok"))])
    recording = tmp_path / "recording"
    with server:
        first = _midstream(["-p", "hi", "--record", str(recording)], tmp_path, {"OPENAI_BASE_URL": server.url + "/v1"})
    assert first.returncode == 0, first.stderr
    for part in recording.glob("0002.*"):
        part.unlink()
    again = _midstream(["-p", "hi", "--replay", str(recording)], tmp_path, {})
    assert again.returncode == 1 and "retry 2/5" not in again.stderr, again.stderr
    assert again.stderr.splitlines()[-1].startswith("midstream: the recording ends at response 1")


@pytest.mark.process
def test_replaying_a_directory_without_a_recording_is_one_clear_line(tmp_path):
    for where in (tmp_path / "missing", tmp_path):  # not there; there but empty
        done = _midstream(["-p", "hi", "--replay", str(where)], tmp_path, {})
        assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("midstream: ") and "--record" in line


@pytest.mark.process
def test_a_chat_session_with_reasoning_continues_on_the_messages_wire(workspace):
    """reasoning_content is kept as thinking without a signature; the Messages API refuses such a
    block (signature: Field required), so a session made on a reasoning server could not go on there."""
    (workspace / "notes.txt").write_text("hello\n")
    server = ScriptedServer([reply(Thinking("let me look"), Text("Reading.\n"), ToolUse("call_1", "read_file",
                                                                                    {"path": "notes.txt"})),
                             reply(Thinking("done"), Text("first done"))])
    with server:
        first = _midstream(["-p", "read"], workspace, {"OPENAI_BASE_URL": server.url + "/v1"})
    assert first.returncode == 0, first.stderr
    server = ScriptedServer([reply(Text("second done"))])
    with server:
        again = subprocess.run([sys.executable, "-m", "midstream", "-p", "again", "-c"], cwd=workspace,
                               env=program_env(ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY="k"),
                               capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout == "second done\n", again.stderr
    sent = server.requests[0]["body"]["messages"]
    blocks = [b for m in sent if m["role"] == "assistant" for b in m["content"]]
    assert all(b.get("signature") for b in blocks if b["type"] == "thinking")
    assert [b["type"] for b in blocks] == ["text", "tool_use", "text"]  # what the reply said and did is kept


def test_a_server_that_numbers_calls_afresh_in_each_reply_is_not_rolled_back(make_agent, workspace):
    """Servers that name calls by position (TGI's "0", "call_0") repeat an id from an earlier reply:
    that reply was 'malformed: tool_use id used twice', rolled back, and its call lost."""
    (workspace / "notes.txt").write_text("hello\n")
    server = ScriptedServer([reply(ToolUse("call_0", "read_file", {"path": "notes.txt"})),
                             reply(ToolUse("call_0", "list_dir", {"path": "."})), reply(Text("done"))])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        assert agent.send("go").ok
    assert renderer.of(TurnRolledBack) == [] and len(server.requests) == 3
    ids = [b["id"] for m in agent.history for b in m["content"] if b.get("type") == "tool_use"]
    assert len(ids) == 2 and len(set(ids)) == 2 and history_problems(agent.history) == []
    tools = [m for m in server.requests[2]["body"]["messages"] if m["role"] == "tool"]
    assert [t["tool_call_id"] for t in tools] == ids


@pytest.mark.process
def test_a_chat_session_with_ids_the_messages_api_refuses_continues_on_the_messages_wire(workspace):
    """Kimi names calls 'functions.read_file:0'; the Messages API takes only [a-zA-Z0-9_-]+ ids."""
    (workspace / "notes.txt").write_text("hello\n")
    server = ScriptedServer([reply(ToolUse("functions.read_file:0", "read_file", {"path": "notes.txt"})),
                             reply(Text("first done"))])
    with server:
        first = _midstream(["-p", "read"], workspace, {"OPENAI_BASE_URL": server.url + "/v1"})
    assert first.returncode == 0, first.stderr
    server = ScriptedServer([reply(Text("second done"))])
    with server:
        again = subprocess.run([sys.executable, "-m", "midstream", "-p", "again", "-c"], cwd=workspace,
                               env=program_env(ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY="k"),
                               capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    blocks = [b for m in server.requests[0]["body"]["messages"] for b in m["content"]]
    (call,) = [b["id"] for b in blocks if b["type"] == "tool_use"]
    (result,) = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
    assert call == result and re.fullmatch(r"[a-zA-Z0-9_-]+", call)


def test_duplicate_or_missing_call_ids_from_a_lax_server_are_made_unique(make_agent):
    call = {"type": "function", "function": {"name": "record", "arguments": '{"label": "A"}'}}
    scripted = {"events": [
        _chunk({"tool_calls": [{"index": 0, "id": "call_0", **call}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "call_0", **call}]}),
        _chunk({"tool_calls": [{"index": 2, **call}]}),
        _chunk({}, finish="tool_calls"), {"type": "message_stop"},
    ]}
    server = ScriptedServer([scripted, reply(Text("ok"))])
    with server:
        agent, renderer = chat_agent(make_agent, server)
        assert agent.send("go").ok
    ids = [c.id for c in renderer.of(ToolCallReady)]
    assert ids[0] == "call_0" and len(set(ids)) == 3 and all(ids)
    assert [m["tool_call_id"] for m in server.requests[1]["body"]["messages"] if m["role"] == "tool"] == ids


def test_ctrl_c_on_a_stalled_chat_stream_keeps_what_streamed_and_the_call_that_ran(make_agent, workspace):
    # What the command line's SIGINT handling does on a first press: flag the turn, then wake the
    # read blocked on the stream by shutting its socket down (the signal itself is tested in a pty
    # in test_interrupts.py; this shows the Chat Completions client is woken the same way).
    (workspace / "notes.txt").write_text("alpha\n")
    stalled = reply(ToolUse("call_1", "read_file", {"path": "notes.txt"}), Text("Thinking about it", chunk=4))
    stop = next(i for i, e in enumerate(stalled["events"]) if e["type"] == "content_block_start" and e["index"] == 1)
    server = ScriptedServer([stalled | {"stall_after": stop + 3, "stall": 30.0}, reply(Text("Fresh start."))])

    def press_ctrl_c() -> None:
        assert wait_until(lambda: "stalled" in server.log, 10) and wait_until(lambda: agent.interruptible, 10)
        agent.interrupting = True
        agent.abort_stream()

    with server:
        agent, _ = chat_agent(make_agent, server)
        presser = threading.Thread(target=press_ctrl_c)
        presser.start()
        ended = agent.send("go")
        presser.join()
        assert ended.stop_reason == "interrupted"
        assert agent.send("again").ok
    messages = server.requests[1]["body"]["messages"]
    assistant, tool, user = messages[-3:]
    assert assistant["content"] == "Thinking" and [c["id"] for c in assistant["tool_calls"]] == ["call_1"]
    assert tool["tool_call_id"] == "call_1" and "alpha" in tool["content"]
    assert user["content"].startswith("[The person interrupted this turn.") and user["content"].endswith("again")


def test_prompt_is_too_long_on_the_anthropic_wire_is_the_same_class():
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(400, json={"type": "error", "error": {
            "type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}})

    client = ModelClient(base_url="http://model.test", api_key="k", transport=httpx2.MockTransport(handler))
    with pytest.raises(PromptTooLong), client.stream({"model": "m"}):
        pass


def test_reasoning_sent_under_both_names_is_shown_once():
    translator = ChunkTranslator()
    events = translator.chunk({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm", "reasoning": "hmm"}}]})
    events += translator.chunk({"choices": [{"index": 0, "delta": {"content": "answer"}, "finish_reason": "stop"}]})
    assembler = TurnAssembler()
    for event in events + translator.done():
        assembler.feed(event)
    assert assembler.message()["content"] == [{"type": "thinking", "thinking": "hmm"},
                                              {"type": "text", "text": "answer"}]
    assert assembler.stop_reason == "end_turn" and assembler.complete


def test_failures_in_a_row_each_roll_back_and_the_command_still_runs_once(make_agent, workspace):
    def command_reply() -> dict:
        return reply(ToolUse("t1", "bash", {"command": "echo ran >> count.txt"}), Text("and more text", chunk=3))

    missing_done = command_reply() | {"end_after": len(command_reply()["events"]) - 1}
    errored = command_reply()
    errored["events"].insert(-2, {"type": "error", "error": {"type": "server_error", "message": "boom"}})
    dropped = command_reply() | {"drop_after": 5}
    server = ScriptedServer([missing_done, errored, {"status": 503, "error": {"message": "loading"}}, dropped,
                             command_reply(), reply(Text("ok"))])
    with server:
        agent, renderer = chat_agent(make_agent, server, isolation="none", max_attempts=5)
        assert agent.send("count").ok
    assert (workspace / "count.txt").read_text() == "ran\n"
    assert len(renderer.of(TurnRolledBack)) == 4
    assert all(r["body"]["messages"] == server.requests[0]["body"]["messages"] for r in server.requests[:5])
    assert history_problems(agent.history) == []
