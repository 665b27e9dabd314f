"""Long sessions: budget, clearing, compaction and overflow recovery against a server with a context limit."""

from __future__ import annotations

import copy
import functools
import json
import re
import sys
from typing import Any

import pexpect
import pytest
from midstream.tools.conversation.compaction import SUMMARY_QUESTION, SUMMARY_TITLE, context_window_for
from midstream.tools.conversation.history import as_blocks, history_problems
from midstream.tools.conversation.tokens import prompt_tokens
from midstream.tools.conversation.transcript import Transcript
from midstream.tools.conversation.usage import Usage
from midstream.tools.events import CacheMissed, Compacted, CompactionFailed, CompactionStarted, ContextCleared
from midstream.tools.registry import Access, ToolContext, ToolRegistry, Wording, tool
from midstream.tools.testing.cache_model import CacheModel
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import LONG_SYSTEM, program_env
from tests.helpers import spawn as _spawn

WINDOW = 6000


@tool(wording=Wording("Fetching", "Fetched", target="page", words=lambda args: f"page {args.get('page')}"),
      access=lambda ws, args: Access.reading("pages"))
def fetch(ctx: ToolContext, page: int, size: int = 430) -> str:
    """Fetch one page of the test corpus."""
    text = f"page {page}: " + "lorem ipsum dolor sit amet " * (size // 27 + 1)
    return text[:size]


def is_summary_request(body: dict[str, Any]) -> bool:
    last = body["messages"][-1]
    return any(b.get("type") == "text" and b["text"].startswith(SUMMARY_QUESTION) for b in as_blocks(last["content"]))


class Model:
    """Answers like a model in a long session: a tool call per request, a closing reply every ``turn``."""

    def __init__(self, turn: int = 30, size: int = 430) -> None:
        self.turn, self.size = turn, size
        self.normal = 0
        self.summaries: list[str] = []

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        if is_summary_request(body):
            self.summaries.append(f"## Task\nSummary {len(self.summaries) + 1}: fetch pages.\n## Next step\nGo on.")
            return reply(Text(self.summaries[-1]))
        self.normal += 1
        if self.normal % self.turn == 0:
            return reply(Text(f"Turn done at request {self.normal}."))
        return reply(ToolUse(f"call{self.normal}", "fetch", {"page": self.normal, "size": self.size}))


def bodies(server: ScriptedServer) -> list[dict[str, Any]]:
    return [r["body"] for r in server.requests]


def test_claude_windows_are_known_and_others_are_set():
    assert context_window_for("claude-sonnet-4-5") == 200_000
    assert context_window_for("claude-instant-1.2") == 100_000
    assert context_window_for("llama3:8b") is None
    assert context_window_for("llama3:8b", 8192) == 8192


def test_a_300_request_session_several_windows_long_always_fits(make_agent):
    model = Model(size=1600)
    server = ScriptedServer([], context_limit=WINDOW, respond=model)
    with server:
        agent, renderer = make_agent(server, tools=ToolRegistry([fetch]), context_window=WINDOW, max_tokens=200,
                                     max_requests=40)
        for turn in range(10):
            assert agent.send(f"Fetch the next pages ({turn}).").ok
    assert model.normal == 300
    assert "too_long" not in server.log  # every request fitted: no overflow was ever needed
    assert all(r["prompt_tokens"] <= WINDOW for r in server.requests)
    assert all(history_problems(body["messages"]) == [] for body in bodies(server))
    assert history_problems(agent.history) == []
    results = sum(len(fetch.function(None, page=n, size=1600)) for n in range(1, 301)) / 4
    assert results > 5 * WINDOW  # the tool results alone are several windows long
    compactions = renderer.of(Compacted)
    assert len(compactions) >= 3 and len(model.summaries) == len(compactions)
    assert renderer.of(ContextCleared) and not renderer.of(CompactionFailed)
    # The summary carries the record of every call summarised so far, across compactions.
    first = bodies(server)[-1]["messages"][0]["content"][0]["text"]
    summarised = int(re.search(r"^- fetch ×(\d+)$", first, re.MULTILINE)[1])
    kept = sum(b.get("type") == "tool_use" for m in bodies(server)[-1]["messages"] for b in m["content"])
    assert summarised + kept == 290  # 300 requests, one in 30 closing a turn without a call
    # A cleared result says what was there and how to get it again.
    texts = json.dumps(bodies(server))
    assert "[Cleared to save context: the result of fetch {\\\"page\\\": " in texts
    # After each compaction: the summary, then the last messages exactly as they were sent.
    sent = bodies(server)
    for index, body in enumerate(sent):
        if not is_summary_request(body):
            continue
        after = sent[index + 1]
        first = after["messages"][0]["content"][0]["text"]
        assert first.startswith(SUMMARY_TITLE) and model.summaries.pop(0) in first
        kept = after["messages"][1:]
        asked = copy.deepcopy(body["messages"][-len(kept):])
        asked[-1]["content"] = asked[-1]["content"][:-1]  # without the question
        assert kept == asked and kept[0]["role"] == "assistant"


@pytest.mark.parametrize("model_name", ["local-model", "claude-test"])
def test_an_overflow_answer_compacts_once_and_the_retry_succeeds(make_agent, model_name):
    # The agent does not know this model's window, or believes it is 200,000 tokens (a proxy that
    # allows less): the service's 400 tells it, and from then on it keeps within it by itself.
    model = Model(turn=30, size=1600)
    server = ScriptedServer([], context_limit=2500, respond=model)
    with server:
        agent, renderer = make_agent(server, tools=ToolRegistry([fetch]), model=model_name, max_tokens=200)
        ended = agent.send("Read all the pages.")
    assert ended.ok
    assert server.log.count("too_long") == 1
    compacted = renderer.of(Compacted)
    assert compacted[0].reason == "overflow" and compacted[0].after < 2500
    assert len(compacted) > 1 and all(c.reason == "auto" for c in compacted[1:])
    refused = sum(line.startswith("request:") for line in server.log[:server.log.index("too_long")])
    retried = [r for r in server.requests[refused:]
               if not is_summary_request(r["body"])][0]["body"]
    assert retried["messages"][0]["content"][0]["text"].startswith(SUMMARY_TITLE)
    assert agent.context_used().window == 2500  # learnt from the error
    assert all(history_problems(body["messages"]) == [] for body in bodies(server))


def test_a_message_larger_than_the_window_is_set_aside_with_one_clear_error_and_the_next_one_goes(make_agent):
    # A single message larger than the window: nothing to clear or compact can make it fit.
    server = ScriptedServer([reply(Text("the next one"))], context_limit=1500)
    with server:
        agent, renderer = make_agent(server, model="local-model")
        ended = agent.send("x" * 8000)
        assert not ended.ok and "larger than the model's context window (1,500 tokens)" in ended.message
        assert "/retry" not in ended.message  # sending it again cannot help: the person sends a shorter one
        assert not renderer.of(CompactionStarted)  # no summary request for a history of one message
        assert agent.history[-1]["role"] == "user" and "Set aside" in json.dumps(agent.history[-1])
        assert agent.send("a short one").ok  # the session goes on
    assert len([line for line in server.log if line.startswith("request:")]) == 2


@pytest.mark.parametrize("model_name, known", [("claude-test", True), ("local-model", False)])
def test_one_result_larger_than_the_window_is_cut_down_and_the_turn_finishes(make_agent, model_name, known):
    model = Model(turn=6, size=1600)
    scripted = [reply(ToolUse("big", "fetch", {"page": 0, "size": 30_000}))]  # ~7,500 tokens: over the window
    server = ScriptedServer(scripted, context_limit=WINDOW, respond=model)
    with server:
        window = {"context_window": WINDOW} if known else {}
        agent, renderer = make_agent(server, tools=ToolRegistry([fetch]), model=model_name, max_tokens=200,
                                     **window)
        assert agent.send("Read everything at once.").ok
    assert server.log.count("too_long") == (0 if known else 1)  # known window: it never even overflows
    after = json.dumps(bodies(server)[-1])
    assert "too large for the context window" in after and "Ask for a smaller part" in after
    # Nothing before the newest reply to summarise: a summary request could free a handful of tokens.
    assert [body for body in bodies(server) if is_summary_request(body)] == []
    assert all(history_problems(body["messages"]) == [] for body in bodies(server))


def test_a_system_prompt_that_fills_the_window_does_not_cost_a_summary_per_request(make_agent):
    model = Model(turn=20, size=200)
    server = ScriptedServer([], context_limit=WINDOW, respond=model)
    with server:
        agent, renderer = make_agent(server, tools=ToolRegistry([fetch]), context_window=WINDOW, max_tokens=200,
                                     system_prompt="Be careful. " * 1750)  # ~5,250 of the 6,000 tokens
        assert agent.send("Fetch.").ok
    summaries = [body for body in bodies(server) if is_summary_request(body)]
    assert 1 <= len(summaries) <= model.normal // 4
    assert not renderer.of(CompactionFailed)


def test_compact_on_request_keeps_what_the_person_asked_for_and_continue_resumes_it(make_agent, workspace):
    model = Model(turn=3)
    server = ScriptedServer([], respond=model)
    with server:
        transcript = Transcript.create(workspace, "claude-test")
        agent, renderer = make_agent(server, tools=ToolRegistry([fetch]), transcript=transcript)
        assert agent.send("Fetch three pages.").ok
        assert agent.send("And three more.").ok
        full = copy.deepcopy(agent.history)
        assert agent.compact("the page numbers")
        summary_body = server.requests[-1]["body"]
        assert summary_body["messages"][:-1] == full  # the history as sent: its cached prefix is read
        assert "keep in particular: the page numbers" in summary_body["messages"][-1]["content"][-1]["text"]
        assert agent.history[0]["content"][0]["text"].startswith(SUMMARY_TITLE)
        assert agent.history[1:] == full[-len(agent.history) + 1:]
        assert agent.send("Once more.").ok
        transcript.close()
    resumed = Transcript.load(transcript.path)
    assert resumed == agent.history  # --continue resumes the compacted conversation
    lines = [json.loads(line) for line in transcript.path.read_text().splitlines()]
    originals = [line["message"] for line in lines if line["type"] == "message"]
    assert originals[0]["content"][0]["text"] == "Fetch three pages."  # the full history stays on disk


def test_compact_with_nothing_to_summarise_says_so(make_agent):
    server = ScriptedServer([])
    with server:
        agent, renderer = make_agent(server)
        assert not agent.compact()
    assert renderer.of(CompactionFailed)[0].message == "nothing to compact yet"
    assert server.requests == []


def test_a_failed_summary_leaves_the_history_and_the_turn_goes_on(make_agent):
    model = Model(turn=16, size=1600)
    fail = {"status": 500, "error": {"type": "api_error", "message": "boom"}}
    server = ScriptedServer([], context_limit=WINDOW)

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        return fail if is_summary_request(body) else model(body)

    server.respond = respond
    with server:
        agent, renderer = make_agent(server, tools=ToolRegistry([fetch]), context_window=WINDOW, max_tokens=200,
                                     max_attempts=2)
        agent.context.policy.keep_recent = 100  # nothing to clear: straight to compaction
        ended = agent.send("Fetch.")
    failed = renderer.of(CompactionFailed)
    assert failed and "boom" in failed[0].message and failed[0].reason == "auto"
    first_failure = server.log.index("sent:http_500")
    assert "request:" in " ".join(server.log[first_failure:])  # the turn went on
    assert all(history_problems(body["messages"]) == [] for body in bodies(server))
    assert ended.ok or "prompt is too long" in ended.message


def test_cleared_results_replay_from_the_transcript(make_agent, workspace):
    model = Model(turn=13, size=1600)
    server = ScriptedServer([], context_limit=WINDOW, respond=model)
    with server:
        transcript = Transcript.create(workspace, "claude-test")
        agent, renderer = make_agent(server, tools=ToolRegistry([fetch]), context_window=WINDOW, max_tokens=200,
                                     transcript=transcript)
        agent.context.policy.compact_at = 0.95
        assert agent.send("Fetch.").ok
        transcript.close()
    assert renderer.of(ContextCleared) and not renderer.of(Compacted)
    assert Transcript.load(transcript.path) == agent.history


def test_after_compaction_the_cache_is_read_again_within_two_requests(make_agent):
    model = Model(turn=100, size=1600)
    cache = CacheModel()
    window = 12_000
    server = ScriptedServer([], context_limit=window, respond=model, cache=cache)
    with server:
        agent, renderer = make_agent(server, tools=ToolRegistry([fetch]), context_window=window, max_tokens=1000,
                                     prompt_cache=True, system_prompt=LONG_SYSTEM, max_requests=30)
        agent.send("Fetch.")
    assert not renderer.of(CacheMissed)  # a rewrite on purpose is not reported as a broken cache
    assert renderer.of(Compacted)
    requests = server.requests
    ratios = [Usage.from_api(r["usage"]).hit_ratio or 0.0 for r in requests]
    for index, request in enumerate(requests):
        if is_summary_request(request["body"]):
            assert ratios[index] > 0.9  # the summary request reads the cached prefix
            assert ratios[index + 2] > 0.9  # and two requests later the new history is read back
            system_and_tools = prompt_tokens({**request["body"], "messages": []})
            assert Usage.from_api(requests[index + 1]["usage"]).cache_read >= system_and_tools


@pytest.mark.parametrize("message, tokens, limit", [
    ("prompt is too long: 208310 tokens > 200000 maximum", 208310, 200000),
    ("input length and `max_tokens` exceed context limit: 197202 + 16000 > 200000, decrease input length", 213202,
     200000),
    ("This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", 9000,
     8192),
])
def test_the_service_s_too_long_answers_map_to_one_error(message, tokens, limit):
    from midstream.tools.wire.errors import PromptTooLong
    from midstream.tools.wire.providers import client_for

    server = ScriptedServer([{"status": 400, "error": {"type": "invalid_request_error", "message": message}}])
    with server:
        client = client_for("anthropic", base_url=server.url, api_key=None)
        with pytest.raises(PromptTooLong) as raised:
            with client.stream({"model": "m", "messages": []}):
                pass
        client.close()
    assert raised.value.tokens == tokens and raised.value.limit == limit and not raised.value.retryable


spawn = functools.partial(_spawn, dimensions=(30, 140))


@pytest.mark.process
def test_compact_at_the_prompt_then_continue_resumes_from_the_summary(workspace):
    server = ScriptedServer([
        reply(Text("first answer")),
        reply(Text("## Task\nSUMMARY-OF-THE-FIRST-EXCHANGE")),
        reply(Text("after compaction")),
        reply(Text("resumed answer")),
    ])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("remember the word pelican")
        child.expect("first answer")
        child.expect("› ")
        child.sendline("/compact the bird")
        child.expect("compacting the conversation")
        child.expect("compacted the conversation")
        child.expect("› ")
        child.sendline("go on")
        child.expect("after compaction")
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)
        child = spawn(server, workspace, "-p", "and now?", "--continue")
        child.expect("resumed answer")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    asked, after, resumed = (server.requests[i]["body"]["messages"] for i in (1, 2, 3))
    assert "keep in particular: the bird" in asked[-1]["content"][-1]["text"]
    for messages in (after, resumed):
        assert "SUMMARY-OF-THE-FIRST-EXCHANGE" in messages[0]["content"][0]["text"]
        assert "pelican" not in json.dumps(messages)  # summarised away: the summary stands for it
        assert messages[1] == {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]}
    assert resumed[-1]["content"][-1]["text"] == "and now?"


@pytest.mark.parametrize("key", ["ctrl-c", "esc"])
@pytest.mark.process
def test_ctrl_c_or_esc_during_compact_leaves_the_conversation_as_it_was(workspace, key):
    server = ScriptedServer([
        reply(Text("first answer")),
        reply(Text("a summary that streams very slowly " * 40, chunk=4, delay=0.1)),
        reply(Text("still all there")),
    ])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("remember the word pelican")
        child.expect("first answer")
        child.expect("› ")
        child.sendline("/compact")
        child.expect("compacting the conversation")
        child.expect(pexpect.TIMEOUT, timeout=0.5)  # the summary is streaming
        if key == "esc":
            child.send("\x1b")  # Esc stops the summary request as Ctrl-C does
        else:
            child.sendintr()
        child.expect("could not compact the conversation: interrupted", timeout=5)
        child.expect("› ")
        child.sendline("go on")
        child.expect("still all there")
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)
    messages = server.requests[-1]["body"]["messages"]
    assert "pelican" in json.dumps(messages) and SUMMARY_TITLE not in json.dumps(messages)


@pytest.mark.process
def test_the_command_line_takes_a_window_and_stream_json_carries_the_compaction(workspace):
    import subprocess

    for n in range(8):
        (workspace / f"part{n}.txt").write_text(f"part {n}\n" + "all work and no play\n" * 90)
    queue = [*(reply(ToolUse(f"r{n}", "read_file", {"path": f"part{n}.txt"})) for n in range(8)),
             reply(Text("read them all"))]

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        return reply(Text("## Task\nRead the parts.")) if is_summary_request(body) else queue.pop(0)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "midstream", "--isolation", "none", *args], cwd=workspace,
                              env=program_env(ANTHROPIC_BASE_URL=server.url), capture_output=True, text=True,
                              timeout=60)

    server = ScriptedServer([], context_limit=5000, respond=respond)
    with server:
        refused = run("-p", "x", "--context-window", "500")
        assert refused.returncode == 2 and "--context-window 500 leaves no room" in refused.stderr
        done = run("-p", "read every part", "--context-window", "5000", "--max-tokens", "500",
                   "--output-format", "stream-json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert "ContextUsed" in kinds and {"window": 5000}.items() <= next(e for e in events
                                                                       if e["event"] == "ContextUsed").items()
    compacted = [e for e in events if e["event"] == "Compacted"]
    assert compacted and all(e["reason"] == "auto" and e["after"] < e["before"] for e in compacted)
    assert kinds.index("CompactionStarted") < kinds.index("Compacted")
    summary = server.requests[-1]["body"]["messages"][0]["content"][0]["text"]
    assert "Read the parts." in summary
    assert "## Tool calls in the summarised part\n- read_file ×" in summary and "part0.txt" in summary
    assert "too_long" not in server.log
    assert all(r["prompt_tokens"] <= 5000 for r in server.requests)


@pytest.mark.process
def test_ctrl_c_during_an_automatic_compaction_stops_the_turn_and_the_session_resumes(workspace):
    for n in range(8):
        (workspace / f"part{n}.txt").write_text(f"part {n}\n" + "all work and no play\n" * 90)
    queue = [*(reply(ToolUse(f"r{n}", "read_file", {"path": f"part{n}.txt"})) for n in range(8)),
             reply(Text("resumed fine"))]

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        if is_summary_request(body):
            return reply(Text("a summary that streams very slowly " * 20, chunk=4, delay=0.1))
        return queue.pop(0)

    server = ScriptedServer([], context_limit=5000, respond=respond)
    with server:
        child = spawn(server, workspace, "-p", "read every part", "--context-window", "5000", "--max-tokens", "500")
        child.expect("compacting the conversation")
        child.expect(pexpect.TIMEOUT, timeout=0.5)
        child.sendintr()
        child.expect("could not compact the conversation: interrupted")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 130
        queue[:] = [reply(Text("resumed fine"))]
        server.respond = lambda body: queue.pop(0)
        child = spawn(server, workspace, "-p", "go on", "--continue", "--context-window", "40000")
        child.expect("resumed fine")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    messages = server.requests[-1]["body"]["messages"]
    assert history_problems(messages) == [] and SUMMARY_TITLE not in json.dumps(messages)
    assert "interrupted this turn" in json.dumps(messages)


def test_a_summary_request_refused_as_too_long_is_cut_to_the_service_s_count_and_sent_again():
    from midstream.tools.conversation.compaction import ContextKeeper
    from midstream.tools.wire.errors import PromptTooLong

    history: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "Read the pages."}]}]
    for n in range(12):
        history.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"c{n}", "name": "fetch",
                                                          "input": {"page": n}}]})
        history.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"c{n}",
                                                     "content": fetch.function(None, page=n, size=2000)}]})
    asked: list[dict[str, Any]] = []

    def ask(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        asked.append(body)
        ours = prompt_tokens(body)
        if len(asked) == 1:  # the service counts twice what we do, and allows our count of the whole
            raise PromptTooLong("prompt is too long", tokens=2 * ours, limit=ours + 100)
        return "## Task\nRead the pages.", {}

    events: list[Any] = []
    keeper = ContextKeeper(None, 100, ask=ask, show=events.append)
    assert keeper.fit(history, {"model": "m", "system": "s", "tools": []}, requested=True)
    assert len(asked) == 2 and 2 * prompt_tokens(asked[1]) <= prompt_tokens(asked[0]) * 0.95
    assert "Read the pages." in json.dumps(asked[1])  # the task stayed; old outputs were cleared instead
    assert history[0]["content"][0]["text"].startswith(SUMMARY_TITLE) and history_problems(history) == []
    assert isinstance(events[-1], Compacted)


def test_plain_and_json_output_say_what_was_compacted_and_how_full_the_window_is():
    import io

    from midstream.tools.conversation.ledger import Ledger
    from midstream.tools.events import CompactionStarted, ContextUsed, RequestUsage, TurnCommitted, TurnEnded
    from midstream.tools.ui.render import PlainRenderer, SummaryRenderer

    usage = {"input_tokens": 46_000, "output_tokens": 10}
    events = [RequestUsage("claude-sonnet-4-5", usage), ContextUsed(46_000, 200_000), TurnCommitted("tool_use", usage),
              ContextCleared(4, 120_000, 70_000), CompactionStarted("auto", 161_000),
              RequestUsage("claude-sonnet-4-5", {"input_tokens": 100, "output_tokens": 900}),  # the summary's
              Compacted("auto", 161_000, 12_000, 40, 1, {"input_tokens": 100, "output_tokens": 900}),
              TurnEnded("end_turn", True)]
    out, err = io.StringIO(), io.StringIO()
    plain = PlainRenderer(out, err)
    summary_out = io.StringIO()
    summary = SummaryRenderer(summary_out)
    for renderer in (plain, summary):  # usage is counted once, by the ledger in front of the renderer
        ledger = Ledger(renderer)
        for event in events[:-1]:
            ledger.show(event)
        ledger.show(ledger.ended(events[-1]))
    lines = err.getvalue().splitlines()
    assert lines[3].endswith(" · context 23%")  # the message's one usage line, at its end
    assert lines[0] == ("✓ cleared 4 old tool results to save context: 120,000 → 70,000 tokens "
                        "(the model can fetch them again)")
    assert lines[1] == "compacting the conversation… (161,000 tokens)"
    assert lines[2] == ("✓ compacted the conversation: 161,000 → 12,000 tokens · 40 messages summarised, "
                        "the last 1 kept verbatim")
    assert ledger.session.output == 910  # the summary request is paid for too
    result = json.loads(summary_out.getvalue())
    assert [c["event"] for c in result["context"]] == ["ContextCleared", "Compacted"]
    assert result["usage"]["output"] == 910
