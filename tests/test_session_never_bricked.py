"""Nothing in the history can make every later request fail, through the real program.

A raw loopback server that refuses, as the API does, any prompt over its context window: a huge
tool input, a message larger than the window, a reply that asks for tools and sends none. After
each, the session goes on and ``--continue`` works three times.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from midstream.tools.conversation.compaction import SUMMARY_QUESTION
from midstream.tools.conversation.history import history_problems
from midstream.tools.conversation.tokens import prompt_tokens
from midstream.tools.testing.raw_server import Connection, RawRequest, RawServer, http, reply_bytes
from midstream.tools.testing.scripted_server import Text, ToolUse, reply

from tests.helpers import midstream

pytestmark = pytest.mark.process

FAST = ["--isolation", "none", "--grace", "0"]


class Windowed:
    """Answers replies in turn, refusing (HTTP 400, as the API words it) any prompt over ``window``."""

    def __init__(self, window: int, replies: list[dict], provider: str = "anthropic") -> None:
        self.window, self.replies, self.provider = window, list(replies), provider
        self.refused: list[int] = []
        self.summaries = 0

    def __call__(self, request: RawRequest, connection: Connection) -> None:
        tokens = prompt_tokens(request.body)
        if tokens > self.window:
            self.refused.append(tokens)
            message = f"prompt is too long: {tokens} tokens > {self.window} maximum"
            connection.send(http(400, json.dumps({"type": "error", "error": {
                "type": "invalid_request_error", "message": message}}).encode()))
            return
        if SUMMARY_QUESTION[:40] in json.dumps(request.body["messages"][-1]):
            self.summaries += 1
            connection.send(reply_bytes(self.provider, reply(Text("## Task\nsummarised"))["events"]))
            return
        scripted = self.replies.pop(0) if self.replies else reply(Text("ok"))
        connection.send(reply_bytes(self.provider, scripted["events"]))


def _run(server: RawServer, workspace: Path, *args: str, stdin: str | None = None):
    return midstream([*FAST, *args], workspace, {"ANTHROPIC_BASE_URL": server.url}, stdin=stdin)


def _valid(server: RawServer) -> None:
    for number, request in enumerate(server.requests):
        assert history_problems(request.body["messages"]) == [], number


def _continue_three_times(workspace: Path, window: int, *args: str) -> None:
    for turn in range(3):
        answers = Windowed(window, [reply(Text(f"still here {turn}"))])
        with RawServer(answers) as server:
            done = _run(server, workspace, *args, "--continue", "-p", f"and now {turn}")
        assert done.returncode == 0, done.stderr
        assert f"still here {turn}" in done.stdout and answers.refused == [], done.stderr
        _valid(server)


def test_a_300_kb_write_in_a_50k_window_then_20_requests_and_three_continues_are_all_accepted(workspace):
    body = "".join(f"line {i:06d} of a large generated file\n" for i in range(8_000))  # ~300 KB
    assert len(body) > 300_000
    steps = [reply(ToolUse(f"s{i}", "bash", {"command": f"echo step {i}"})) for i in range(20)]
    answers = Windowed(50_000, [reply(ToolUse("w", "write_file", {"path": "big.txt", "content": body})), *steps,
                                reply(Text("all written"))])
    with RawServer(answers) as server:
        done = _run(server, workspace, "--context-window", "50000", "-p", "write it, then 20 steps")
    assert done.returncode == 0 and "all written" in done.stdout, done.stderr
    assert (workspace / "big.txt").read_text() == body
    assert answers.refused == [] and len(server.requests) == 22
    _valid(server)
    sent = server.requests[1].body["messages"][1]["content"][0]
    assert sent["type"] == "tool_use" and sent["input"]["path"] == "big.txt"  # the call keeps its shape
    assert "Cleared" in sent["input"]["content"] and f"{len(body):,} characters" in sent["input"]["content"]
    assert "cleared 1 long tool input to save context" in done.stderr  # an input, not called a result
    _continue_three_times(workspace, 50_000, "--context-window", "50000")


def test_a_1_mib_write_is_cleared_not_compacted_for_a_handful_of_tokens(workspace):
    body = "x" * (1 << 20)
    answers = Windowed(200_000, [reply(ToolUse("w", "write_file", {"path": "huge.txt", "content": body})),
                                 reply(Text("written"))])
    with RawServer(answers) as server:
        done = _run(server, workspace, "-p", "write a huge file")
    assert done.returncode == 0 and "written" in done.stdout, done.stderr
    assert answers.summaries == 0 and answers.refused == []
    assert len(server.requests) == 2
    assert sum(len(r.raw) for r in server.requests) < 300_000  # the megabyte was sent once, never again
    _continue_three_times(workspace, 200_000)


def test_a_message_larger_than_the_window_gets_one_line_and_the_session_goes_on(workspace):
    with RawServer(Windowed(50_000, [reply(Text("first answer"))])) as server:
        assert _run(server, workspace, "--context-window", "50000", "-p", "hello").returncode == 0
    pasted = "pasted log line that goes on and on\n" * 10_000  # ~90K tokens
    answers = Windowed(50_000, [])
    with RawServer(answers) as server:
        done = _run(server, workspace, "--context-window", "50000", "--continue", "-p", "-", stdin=pasted)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines()
             if (line.startswith("midstream:") or "context window" in line) and "warning:" not in line]
    assert len(lines) == 1 and "larger than" in lines[0] and "context window" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    _continue_three_times(workspace, 50_000, "--context-window", "50000")


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_reply_that_asks_for_tools_and_sends_none_ends_the_turn_with_one_line(workspace, provider):
    empty = reply(Text("I will call a tool now"), stop_reason="tool_use")
    answers = Windowed(200_000, [empty], provider)
    env = {"OPENAI_BASE_URL": "{url}/v1"} if provider == "openai" else {"ANTHROPIC_BASE_URL": "{url}"}
    with RawServer(answers) as server:
        done = midstream([*FAST, "--provider", provider, "-p", "do it"], workspace,
                         {k: v.format(url=server.url) for k, v in env.items()})
    assert done.returncode == 1, done.stderr
    assert len(server.requests) == 1  # no loop
    assert "sent no tool call" in done.stderr and done.stderr.count("sent no tool call") == 1
    for turn in range(3):
        with RawServer(Windowed(200_000, [reply(Text(f"answered {turn}"))], provider)) as server:
            again = midstream([*FAST, "--provider", provider, "--continue", "-p", f"next {turn}"], workspace,
                              {k: v.format(url=server.url) for k, v in env.items()})
        assert again.returncode == 0 and f"answered {turn}" in again.stdout, again.stderr
        roles = [m["role"] for m in server.requests[0].body["messages"] if m["role"] != "system"]
        assert roles[-1] in ("user", "tool") and roles.count("assistant") == turn + 1
