"""Usage and cost are counted exactly once per answered request: committed, rolled back, interrupted,
and the summary request of /compact, whether it succeeds, breaks off and is retried, or fails.

Every request below is answered with its own token counts, so a request counted twice or not at
all shows in the session's totals.
"""

from __future__ import annotations

import json
import threading

import pytest
from midstream.tools.cli.interrupts import interrupt_turn
from midstream.tools.conversation.usage import price_for
from midstream.tools.events import TurnEnded
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import Terminal, drop_after_block, in_order, midstream, wait_until


def billed(*replies: dict, dropped: set[int] = frozenset()) -> tuple[int, int]:
    """Input and output tokens the service bills for ``replies`` (a dropped one: message_start's only)."""
    inputs = outputs = 0
    for index, scripted in enumerate(replies):
        start = scripted["events"][0]["message"]["usage"]
        inputs += start["input_tokens"]
        outputs += start["output_tokens"] if index in dropped else scripted["events"][-2]["usage"]["output_tokens"]
    return inputs, outputs


def test_a_rolled_back_attempt_and_its_retry_are_each_counted_once(make_agent, workspace):
    (workspace / "a.txt").write_text("a\n")
    first = reply(ToolUse("t1", "read_file", {"path": "a.txt"}), Text("more"), usage={"input_tokens": 100,
                                                                                        "output_tokens": 7})
    last = reply(Text("done"), usage={"input_tokens": 1000, "output_tokens": 70})
    server = ScriptedServer([drop_after_block(first, 0), first, last])
    with server:
        agent, renderer = make_agent(server)
        ended = agent.send("go")
    assert ended.ok
    inputs, outputs = billed(first, first, last, dropped={0})
    for total in (ended.usage, ended.session, agent.ledger.session):
        assert (total.requests, total.input, total.output) == (3, inputs, outputs)


def test_a_summary_that_breaks_off_and_is_retried_counts_both_answers(make_agent):
    answer = reply(Text("hello"), usage={"input_tokens": 10, "output_tokens": 3})
    summary = reply(Text("The summary."), usage={"input_tokens": 500, "output_tokens": 40})
    broken = summary | {"drop_after": 2}  # message_start and a ping: answered, so billed, then dropped
    server = ScriptedServer([answer, broken, summary])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("hi").ok
        assert agent.compact()
    inputs, outputs = billed(answer, summary, summary, dropped={1})
    assert (agent.ledger.session.requests, agent.ledger.session.input, agent.ledger.session.output) == (
        3, inputs, outputs)


def test_a_summary_that_comes_back_empty_is_still_counted(make_agent):
    answer = reply(Text("hello"), usage={"input_tokens": 10, "output_tokens": 3})
    empty = reply(Text(""), usage={"input_tokens": 500, "output_tokens": 1})
    server = ScriptedServer([answer, empty])
    with server:
        agent, renderer = make_agent(server)
        assert agent.send("hi").ok
        assert not agent.compact()  # "the model's summary was empty": nothing changed, but it was billed
    inputs, outputs = billed(answer, empty)
    assert (agent.ledger.session.requests, agent.ledger.session.input, agent.ledger.session.output) == (
        2, inputs, outputs)


def test_the_next_message_line_counts_the_summary_once(make_agent):
    answer = reply(Text("hello"), usage={"input_tokens": 10, "output_tokens": 3})
    summary = reply(Text("The summary."), usage={"input_tokens": 500, "output_tokens": 40})
    server = ScriptedServer([answer, summary, answer])
    with server:
        agent, renderer = make_agent(server)
        assert agent.send("hi").ok
        assert agent.compact()
        assert agent.send("again").ok
    first, second = renderer.of(TurnEnded)
    assert first.usage.requests == 1 and second.usage.requests == 2  # the summary and the answer
    assert second.session.requests == 3 and second.session.input == 10 + 500 + 10


@pytest.mark.process
def test_cost_and_the_session_line_at_exit_count_a_compact_after_the_last_message(workspace):
    answer = reply(Text("hello"), usage={"input_tokens": 10, "output_tokens": 3}, model="claude-sonnet-4-5")
    summary = reply(Text("The summary."), usage={"input_tokens": 500, "output_tokens": 40})
    server = ScriptedServer([answer, summary])
    with server:
        term = Terminal(server, workspace, 120)
        term.expect("› ")
        term.child.sendline("hi")
        term.expect("hello")
        term.expect("› ")
        term.child.sendline("/compact")
        term.expect("compacted the conversation")
        term.expect("› ")
        term.child.sendline("/cost")
        term.expect("so far: ")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    assert in_order(rows, ["so far: 2 requests · 510 in · 43 out", "session: 2 requests · 510 in · 43 out"]) == [], rows


@pytest.mark.process
def test_json_output_totals_count_a_rolled_back_attempt_once(workspace):
    (workspace / "a.txt").write_text("a\n")
    first = reply(ToolUse("t1", "read_file", {"path": "a.txt"}), Text("more"),
                  usage={"input_tokens": 100_000, "output_tokens": 700}, model="claude-sonnet-4-5")
    last = reply(Text("done"), usage={"input_tokens": 200_000, "output_tokens": 70}, model="claude-sonnet-4-5")
    replies = [drop_after_block(first, 0), first, last]
    with ScriptedServer(replies) as server:
        done = midstream(["--isolation", "none", "-p", "go", "--output-format", "json"], workspace,
                         {"ANTHROPIC_BASE_URL": server.url})
    result = json.loads(done.stdout)
    inputs, outputs = billed(first, first, last, dropped={0})
    assert (result["usage"]["input_tokens"], result["usage"]["output_tokens"], result["requests"]) == (
        inputs, outputs, 3)
    price_in, price_out = price_for("claude-sonnet-4-5")
    assert result["total_cost_usd"] == pytest.approx((inputs * price_in + outputs * price_out) / 1e6)


def test_an_interrupted_summary_is_counted_once(make_agent):
    answer = reply(Text("hello"), usage={"input_tokens": 10, "output_tokens": 3})
    summary = reply(Text("The summary."), usage={"input_tokens": 500, "output_tokens": 40})
    stalled = summary | {"stall_after": 2, "stall": 30.0}  # answered (message_start), then silent
    server = ScriptedServer([answer, stalled])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("hi").ok

        def press() -> None:
            assert wait_until(lambda: "sent:ping" in server.log[-3:] and agent.interruptible, 10)
            interrupt_turn(agent)

        threading.Thread(target=press, daemon=True).start()
        assert not agent.compact()
    inputs, outputs = billed(answer, summary, dropped={1})
    assert (agent.ledger.session.requests, agent.ledger.session.input, agent.ledger.session.output) == (
        2, inputs, outputs)
