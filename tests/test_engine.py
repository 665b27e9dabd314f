"""The streaming turn engine against the scripted SSE server: dispatch, scheduling, history."""

from __future__ import annotations

import json

from midstream.tools.events import ToolCallReady, ToolFinished, TurnCommitted
from midstream.tools.testing.scripted_server import Raw, ScriptedServer, Text, Thinking, ToolUse, reply

from tests.helpers import tool_results, wait_until


def test_tool_starts_before_the_reply_ends(make_agent):
    first = reply(ToolUse("t1", "record", {"label": "A"}), Text("still streaming after the tool call"))
    server = ScriptedServer([first, reply(Text("done"))])
    # The text block's first event waits (up to 5 s) for the tool to start: a loop that only
    # dispatches at message_stop never starts it, and the log below shows the wrong order.
    text_start = next(e for e in first["events"] if e["type"] == "content_block_start" and e["index"] == 1)
    text_start["_before"] = lambda: wait_until(lambda: "start:A" in server.log)
    with server:
        agent, _ = make_agent(server)
        assert agent.send("go").ok
    log = server.log
    assert log.index("sent:content_block_stop:0") < log.index("start:A") < log.index("sent:content_block_start:1")
    assert log.index("start:A") < log.index("sent:message_stop")


def test_independent_reads_overlap(make_agent):
    # A waits until B has started: only if they overlap does B start before A ends.
    server = ScriptedServer([
        reply(ToolUse("t1", "record", {"label": "A", "reads": "a.txt", "wait_for": "B"}),
              ToolUse("t2", "record", {"label": "B", "reads": "b.txt"})),
        reply(Text("ok")),
    ])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("read both").ok
    log = server.log
    assert log.index("start:B") < log.index("end:A")


def test_writes_to_one_path_run_in_emission_order(make_agent):
    # W1 waits a while for W2 to start; W2 must not start until W1 has ended.
    server = ScriptedServer([
        reply(ToolUse("t1", "record", {"label": "W1", "writes": "x.txt", "wait_for": "W2", "wait_seconds": 0.5}),
              ToolUse("t2", "record", {"label": "W2", "writes": "x.txt"}),
              ToolUse("t3", "record", {"label": "R", "reads": "x.txt"})),
        reply(Text("ok")),
    ])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("write twice").ok
    order = [line for line in server.log if line.startswith(("start:", "end:"))]
    assert order == ["start:W1", "end:W1", "start:W2", "end:W2", "start:R", "end:R"]


def test_a_failing_call_does_not_cancel_its_siblings(make_agent):
    server = ScriptedServer([
        reply(ToolUse("t1", "record", {"label": "bad", "fail": True}),
              ToolUse("t2", "record", {"label": "good", "wait_for": "bad"})),
        reply(Text("ok")),
    ])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("go").ok
    results = tool_results(server.requests[1])
    assert [r["tool_use_id"] for r in results] == ["t1", "t2"]
    assert results[0]["is_error"] is True and "failed on purpose" in results[0]["content"]
    assert "is_error" not in results[1] and results[1]["content"] == "recorded good"


def test_request_after_a_tool_turn_carries_what_the_api_requires(make_agent, workspace):
    (workspace / "a.txt").write_text("alpha\n")
    server = ScriptedServer([
        reply(Thinking("let me look", signature="sig-123"), Text("Reading two files."),
              ToolUse("t1", "read_file", {"path": "a.txt"}), ToolUse("t2", "record", {"label": "B"})),
        reply(Text("All done.")),
    ])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("look").ok
    second = server.requests[1]["body"]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][0]["content"] == [{"type": "text", "text": "look"}]
    assert second["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "let me look", "signature": "sig-123"},
        {"type": "text", "text": "Reading two files."},
        {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "a.txt"}},
        {"type": "tool_use", "id": "t2", "name": "record", "input": {"label": "B"}},
    ]
    assert second["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "     1\talpha"},
        {"type": "tool_result", "tool_use_id": "t2", "content": "recorded B"},
    ]
    assert second["stream"] is True and second["model"] == "claude-test"
    assert [t["name"] for t in second["tools"]] == sorted(t["name"] for t in second["tools"])
    assert agent.history[-1] == {"role": "assistant", "content": [{"type": "text", "text": "All done."}]}


def test_pings_unknown_events_and_unknown_blocks_do_not_break_a_turn(make_agent):
    odd = reply(Text("before"), Raw({"type": "future_block", "payload": {"x": [1, 2]}}), Text("after"))
    odd["events"].insert(3, {"type": "mystery_event", "data": 1})
    odd["events"].insert(5, {"type": "ping"})
    server = ScriptedServer([odd])
    with server:
        agent, renderer = make_agent(server)
        assert agent.send("hi").ok
    assert agent.history[-1]["content"] == [
        {"type": "text", "text": "before"},
        {"type": "future_block", "payload": {"x": [1, 2]}},
        {"type": "text", "text": "after"},
    ]
    assert renderer.of(TurnCommitted)[0].stop_reason == "end_turn"


def test_bad_calls_become_error_results_and_the_conversation_goes_on(make_agent):
    server = ScriptedServer([
        reply(ToolUse("t1", "record", raw_json='{"label": "A"'),          # invalid JSON
              ToolUse("t2", "no_such_tool", {"x": 1}),                     # unknown tool
              ToolUse("t3", "record", {"label": 7}),                        # wrong type
              ToolUse("t4", "record", {}),                                  # missing field
              ToolUse("t5", "record", {"label": "ok"})),
        reply(Text("recovered")),
    ])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("go").ok
    bad, unknown, wrong_type, missing, good = tool_results(server.requests[1])
    assert bad["is_error"] and "not valid JSON" in bad["content"]
    assert unknown["is_error"] and "read_file" in unknown["content"] and "record" in unknown["content"]
    assert wrong_type["is_error"] and "'label' must be of type string" in wrong_type["content"]
    assert missing["is_error"] and "missing required field 'label'" in missing["content"]
    assert "is_error" not in good
    assert server.log.count("start:ok") == 1 and "start:A" not in server.log
    # The broken input is recorded as {} so the history stays valid for the API.
    assert server.requests[1]["body"]["messages"][1]["content"][0]["input"] == {}


def test_awkward_delta_boundaries_assemble_to_the_same_input(make_agent):
    tricky = {"path": 'quote " back\\slash \n newline', "emoji": "héllo 😀 世界", "n": [1, 2.5, None, True]}
    raw = json.dumps(tricky)  # ASCII escapes: \" \\ \n \u00e9 \ud83d\ude00 …
    mid_escape = raw.index("\\ud83d") + 3
    pieces = {
        "one char per delta": list(raw),
        "mid escape": [raw[:mid_escape], raw[mid_escape:]],
        "unescaped utf-8": list(json.dumps(tricky, ensure_ascii=False)),
    }
    replies = [reply(ToolUse(f"t{i}", "record_any", deltas=p)) for i, p in enumerate(pieces.values())]
    server = ScriptedServer([*replies, reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server)
        agent.send("go")
    inputs = [e.input for e in renderer.of(ToolCallReady)]
    assert inputs == [tricky] * 3


def test_max_tokens_cuts_off_a_tool_call_which_never_runs(make_agent):
    server = ScriptedServer([
        reply(ToolUse("t1", "record", {"label": "whole"}),
              ToolUse("t2", "record", raw_json='{"label": "cut'), stop_reason="max_tokens"),
        reply(Text("continuing")),
    ])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("go").ok
    second = server.requests[1]["body"]["messages"]
    assert [b["id"] for b in second[1]["content"] if b["type"] == "tool_use"] == ["t1"]
    assert [r["tool_use_id"] for r in tool_results(server.requests[1])] == ["t1"]
    assert "start:cut" not in server.log


def test_max_tokens_with_text_only_ends_the_turn_as_failed(make_agent):
    server = ScriptedServer([reply(Text("a long answ"), stop_reason="max_tokens")])
    with server:
        agent, _ = make_agent(server)
        ended = agent.send("go")
    assert not ended.ok and "max_tokens" in ended.message
    assert agent.history[-1]["content"] == [{"type": "text", "text": "a long answ"}]


def test_pause_turn_continues_without_a_user_message(make_agent):
    server = ScriptedServer([reply(Text("part one"), stop_reason="pause_turn"), reply(Text("part two"))])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("go").ok
    assert [m["role"] for m in server.requests[1]["body"]["messages"]] == ["user", "assistant"]


def test_refusal_ends_the_turn_and_stop_sequence_is_success(make_agent):
    server = ScriptedServer([reply(Text("no"), stop_reason="refusal"), reply(Text("x"), stop_reason="stop_sequence")])
    with server:
        agent, _ = make_agent(server)
        refused = agent.send("bad")
        assert not refused.ok and refused.stop_reason == "refusal"
        assert agent.send("fine").ok
    # The second user message follows the refused assistant reply; roles alternate.
    assert [m["role"] for m in server.requests[1]["body"]["messages"]] == ["user", "assistant", "user"]


def test_max_requests_stops_a_runaway_loop(make_agent):
    server = ScriptedServer([reply(ToolUse(f"t{i}", "record", {"label": str(i)})) for i in range(5)])
    with server:
        agent, _ = make_agent(server, max_requests=3)
        ended = agent.send("loop")
    assert not ended.ok and "3 model requests" in ended.message
    assert ended.stop_reason == "max_requests"  # a fact for -p's exit and stream-json's subtype, not words
    assert len(server.requests) == 3
    # The last tool turn still got its results: history stays valid for the next message.
    assert agent.history[-1]["content"][0]["type"] == "tool_result"


def test_tool_events_reach_the_renderer_in_order(make_agent):
    server = ScriptedServer([reply(ToolUse("t1", "record", {"label": "A"})), reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server)
        agent.send("go")
    kinds = [type(e).__name__ for e in renderer.events if getattr(e, "id", None) == "t1"]
    assert kinds == ["ToolCallStarted", "ToolInputDelta", "ToolCallReady", "ToolRunning", "ToolFinished"]
    assert renderer.of(ToolFinished)[0].result.content == "recorded A"
